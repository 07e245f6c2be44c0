package node

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/pdu"
	tempelv1 "github.com/tempel-ksi/tempel/proto/tempel/v1"
)

// An extension to a publication time after the calendar's clock is
// refused by the calendar service, so gRPC, REST and PDU all refuse it,
// each with its status (OUT_OF_RANGE, 400, 0x107) and the same reason;
// a time the clock has passed but the calendar has not reached is still
// "too new" (0x106).
func TestExtendFuturePublicationTime(t *testing.T) {
	dir := t.TempDir()
	prepareCalendar(t, dir, 9, 6)
	now := time.Unix(markBase+9, 500e6) // nothing new closes
	n := start(t, Config{Role: RoleCalendar, DataDir: dir, Now: func() time.Time { return now }})
	future, notYet := uint64(markBase+20), uint64(markBase+8)

	ext := tempelv1.NewExtenderClient(dial(t, n.addr))
	_, err := ext.Extend(context.Background(), &tempelv1.ExtendRequest{AggregationTime: markBase + 2, PublicationTime: future})
	if status.Code(err) != codes.OutOfRange || !strings.Contains(err.Error(), "in the future") {
		t.Errorf("gRPC extend to %d: %v, want OUT_OF_RANGE, in the future", future, err)
	}
	_, err = ext.Extend(context.Background(), &tempelv1.ExtendRequest{AggregationTime: markBase + 2, PublicationTime: notYet})
	if status.Code(err) != codes.OutOfRange || strings.Contains(err.Error(), "in the future") {
		t.Errorf("gRPC extend to %d: %v, want OUT_OF_RANGE, after the last second", notYet, err)
	}

	body := `{"aggregationTime":"` + strconv.Itoa(markBase+2) + `","publicationTime":"` + strconv.FormatUint(future, 10) + `"}`
	resp, err := http.Post("http://"+n.addr+"/v1/extend", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "in the future") {
		t.Errorf("REST extend to %d: %s %s, want 400, in the future", future, resp.Status, b)
	}

	for _, tc := range []struct {
		pub  uint64
		want uint64
	}{{future, pdu.StatusExtTimeInFuture}, {notYet, pdu.StatusExtTimeTooNew}, {markBase + 5, pdu.StatusOK}} {
		req := &pdu.ExtenderRequest{Envelope: pdu.Envelope{Header: pdu.Header{LoginID: "anon"}},
			Requests: []pdu.ExtendRequest{{RequestID: 1, AggregationTime: markBase + 2, PublicationTime: tc.pub, HasPublicationTime: true}}}
		raw, err := req.Encode(ksi.SHA2_256, []byte("anon"))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Post("http://"+n.addr+"/gt-extendingservice", "application/ksi-request", bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		out, err := pdu.ParseExtenderResponse(b)
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Responses) != 1 || out.Responses[0].Status != tc.want {
			t.Errorf("PDU extend to %d: %+v, want status %#x", tc.pub, out.Responses, tc.want)
		}
	}
}
