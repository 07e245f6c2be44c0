package node

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/calendar"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/pdu"
	tempelv1 "github.com/tempel-ksi/tempel/proto/tempel/v1"
)

const markBase = 1_800_000_000

// prepareCalendar writes a data directory whose store holds seconds
// markBase..markBase+last and whose watermark marks markBase+marked:
// the state after a crash between a second's commit and its mark.
func prepareCalendar(t *testing.T, dir string, last, marked uint64) ksi.Imprint {
	t.Helper()
	st, err := calendar.OpenStore(filepath.Join(dir, "calendar"), calendar.StoreOptions{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	leaves := make([]ksi.Imprint, last+1)
	for i := range leaves {
		leaves[i] = docHash(strconv.Itoa(i))
	}
	if _, err := st.AppendRange(markBase, leaves, true); err != nil {
		t.Fatal(err)
	}
	root, err := st.Root(markBase + marked)
	if err != nil {
		t.Fatal(err)
	}
	w, _, err := calendar.OpenWatermark(WatermarkPath(dir, ""), true)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Answered(markBase+marked, root); err != nil {
		t.Fatal(err)
	}
	return root
}

// TestHeadOnlyAnsweredSeconds: a second the store has but the watermark
// does not (its answers never left) is not shown either: the calendar
// head over gRPC and REST and extension stop at the marked second, since
// the unmarked one could still be lost with the WAL's tail and then be
// appended again with another leaf.
func TestHeadOnlyAnsweredSeconds(t *testing.T) {
	dir := t.TempDir()
	root := prepareCalendar(t, dir, 9, 6)
	// The clock stays inside the store's last second: nothing new closes.
	now := time.Unix(markBase+9, 500e6)
	n := start(t, Config{Role: RoleCalendar, DataDir: dir, Now: func() time.Time { return now }})
	ext := tempelv1.NewExtenderClient(dial(t, n.addr))
	head, err := ext.GetCalendarHead(context.Background(), &tempelv1.GetCalendarHeadRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if head.LastTime != markBase+6 || !ksi.Imprint(head.Root).Equal(root) {
		t.Fatalf("head at %d, want the marked second %d with its root", head.LastTime, markBase+6)
	}
	resp, err := http.Get("http://" + n.addr + "/v1/calendar/head")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), strconv.Itoa(markBase+6)) ||
		strings.Contains(string(body), strconv.Itoa(markBase+9)) {
		t.Fatalf("REST head: %s %s", resp.Status, body)
	}
	out, err := ext.Extend(context.Background(), &tempelv1.ExtendRequest{AggregationTime: markBase + 2})
	if err != nil || out.CalendarLastTime != markBase+6 {
		t.Fatalf("extend: %v, last %d", err, out.GetCalendarLastTime())
	}
	// The KSI PDU extender's configuration says the same last second.
	raw, err := (&pdu.ExtenderRequest{Envelope: pdu.Envelope{Header: pdu.Header{LoginID: "anon"}}, ConfigRequest: true}).
		Encode(ksi.SHA2_256, []byte("anon"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err = http.Post("http://"+n.addr+"/gt-extendingservice", "application/ksi-request", bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	cfg, err := pdu.ParseExtenderResponse(body)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Config == nil || cfg.Config.CalendarLastTime != markBase+6 {
		t.Fatalf("PDU configuration %+v, want last time %d", cfg.Config, markBase+6)
	}
}

// TestRefusedWithoutTouchingTheStore: a watermark that has answered
// seconds and a data directory without the store (deleted, or a new
// volume not yet restored) is refused before a new empty store is
// created there, so a backup can be put back where it belongs.
func TestRefusedWithoutTouchingTheStore(t *testing.T) {
	dir := t.TempDir()
	prepareCalendar(t, dir, 3, 3)
	if err := os.RemoveAll(filepath.Join(dir, "calendar")); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		_, _, err := OpenCalendar(dir, "", calendar.StoreOptions{Logger: quiet()})
		if !errors.Is(err, calendar.ErrHistoryLost) || !strings.Contains(err.Error(), "the store is empty") {
			t.Fatalf("open %d: %v, want ErrHistoryLost", i, err)
		}
		if _, err := os.Stat(filepath.Join(dir, "calendar")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("open %d: a refused start created the store: %v", i, err)
		}
	}
}

// TestMissingWatermarkRefusedEveryTime: a store with seconds and no
// watermark is refused on every start, not only the first (the refusal
// must not create a fresh mark that the next start would accept).
func TestMissingWatermarkRefusedEveryTime(t *testing.T) {
	dir := t.TempDir()
	prepareCalendar(t, dir, 3, 3)
	if err := os.Remove(WatermarkPath(dir, "")); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		_, _, err := OpenCalendar(dir, "", calendar.StoreOptions{Logger: quiet()})
		if !errors.Is(err, calendar.ErrHistoryLost) || !strings.Contains(err.Error(), "watermark file "+WatermarkPath(dir, "")+" is missing") ||
			!strings.Contains(err.Error(), "Put the watermark file back (or give its place with --watermark)") {
			t.Fatalf("open %d: %v, want ErrHistoryLost", i, err)
		}
		if _, err := os.Stat(WatermarkPath(dir, "")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("open %d: a refused start created the watermark: %v", i, err)
		}
	}
}

// TestEmptyStoreDirectory: an empty calendar directory (made by hand or
// by deployment tooling) is a calendar not yet begun, not a damaged
// store; under a watermark that answered seconds it is refused like a
// missing one, and left empty.
func TestEmptyStoreDirectory(t *testing.T) {
	dir := t.TempDir()
	cal := filepath.Join(dir, "calendar")
	if err := os.Mkdir(cal, 0o700); err != nil {
		t.Fatal(err)
	}
	st, w, err := OpenCalendar(dir, "", calendar.StoreOptions{Logger: quiet()})
	if err != nil {
		t.Fatalf("new calendar in an empty directory: %v", err)
	}
	w.Close()
	st.Close()

	dir = t.TempDir()
	prepareCalendar(t, dir, 3, 3)
	cal = filepath.Join(dir, "calendar")
	if err := os.RemoveAll(cal); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(cal, 0o700); err != nil {
		t.Fatal(err)
	}
	_, _, err = OpenCalendar(dir, "", calendar.StoreOptions{Logger: quiet()})
	if !errors.Is(err, calendar.ErrHistoryLost) || !strings.Contains(err.Error(), "the store is empty") {
		t.Fatalf("empty store directory under a watermark: %v, want ErrHistoryLost", err)
	}
	if entries, _ := os.ReadDir(cal); len(entries) != 0 {
		t.Fatalf("a refused start wrote %d files into the store directory", len(entries))
	}
}
