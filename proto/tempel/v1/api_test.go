package tempelv1_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	tempelv1 "github.com/tempel-ksi/tempel/proto/tempel/v1"
)

// The generated registration functions the servers rely on.
var (
	_ = tempelv1.RegisterSignerServer
	_ = tempelv1.RegisterExtenderServer
	_ = tempelv1.RegisterPublicationsServer
	_ = tempelv1.RegisterSignerHandlerServer
	_ = tempelv1.RegisterExtenderHandlerServer
	_ = tempelv1.RegisterPublicationsHandlerServer
	_ = tempelv1.RegisterSignerHandlerFromEndpoint
	_ = tempelv1.RegisterExtenderHandlerFromEndpoint
	_ = tempelv1.RegisterPublicationsHandlerFromEndpoint
)

// sha256Imprint is a SHA-256 imprint: algorithm 0x01 and a 32-byte digest.
var sha256Imprint = append([]byte{0x01}, make([]byte, 32)...)

func TestSignRequestRoundTrip(t *testing.T) {
	want := &tempelv1.SignRequest{RequestId: 1<<63 + 7, Hash: sha256Imprint, Level: 3}
	wire, err := proto.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	got := new(tempelv1.SignRequest)
	if err := proto.Unmarshal(wire, got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("SignRequest round trip (-want +got):\n%s", diff)
	}
}

// fakeServer answers every call with values derived from the request, so
// the gateway test can see that path, body and query reached the server.
type fakeServer struct {
	tempelv1.UnimplementedSignerServer
	tempelv1.UnimplementedExtenderServer
	tempelv1.UnimplementedPublicationsServer
}

func (fakeServer) Sign(_ context.Context, r *tempelv1.SignRequest) (*tempelv1.SignResponse, error) {
	return &tempelv1.SignResponse{RequestId: r.RequestId, Signature: r.Hash, AggregationTime: uint64(r.Level)}, nil
}

func (fakeServer) Extend(_ context.Context, r *tempelv1.ExtendRequest) (*tempelv1.ExtendResponse, error) {
	return &tempelv1.ExtendResponse{CalendarChain: []byte{0x08, 0x02}, CalendarLastTime: r.AggregationTime + r.PublicationTime}, nil
}

func (fakeServer) GetCalendarHead(context.Context, *tempelv1.GetCalendarHeadRequest) (*tempelv1.CalendarHead, error) {
	return &tempelv1.CalendarHead{FirstTime: 1, LastTime: 2, Root: sha256Imprint}, nil
}

func (fakeServer) ListPublications(_ context.Context, r *tempelv1.ListPublicationsRequest) (*tempelv1.ListPublicationsResponse, error) {
	return &tempelv1.ListPublicationsResponse{Publications: []*tempelv1.Publication{
		{PublicationTime: r.SinceTime, PublishedHash: sha256Imprint, PublicationString: "AAAAAA-..."},
	}}, nil
}

// TestGatewayRoutes checks the routes of tempel_gateway.yaml end to end
// through an in-process gateway.
func TestGatewayRoutes(t *testing.T) {
	ctx := t.Context()
	mux := runtime.NewServeMux()
	srv := fakeServer{}
	for _, register := range []func() error{
		func() error { return tempelv1.RegisterSignerHandlerServer(ctx, mux, srv) },
		func() error { return tempelv1.RegisterExtenderHandlerServer(ctx, mux, srv) },
		func() error { return tempelv1.RegisterPublicationsHandlerServer(ctx, mux, srv) },
	} {
		if err := register(); err != nil {
			t.Fatal(err)
		}
	}
	hs := httptest.NewServer(mux)
	defer hs.Close()

	for _, tc := range []struct {
		name, method, path, body string
		want                     proto.Message
	}{{
		name:   "sign",
		method: http.MethodPost, path: "/v1/sign",
		body: `{"requestId":"9","hash":"AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","level":2}`,
		want: &tempelv1.SignResponse{RequestId: 9, Signature: sha256Imprint, AggregationTime: 2},
	}, {
		name:   "extend",
		method: http.MethodPost, path: "/v1/extend",
		body: `{"aggregationTime":"100","publicationTime":"20"}`,
		want: &tempelv1.ExtendResponse{CalendarChain: []byte{0x08, 0x02}, CalendarLastTime: 120},
	}, {
		name:   "calendar head",
		method: http.MethodGet, path: "/v1/calendar/head",
		want: &tempelv1.CalendarHead{FirstTime: 1, LastTime: 2, Root: sha256Imprint},
	}, {
		name:   "publications",
		method: http.MethodGet, path: "/v1/publications?sinceTime=1700000000",
		want: &tempelv1.ListPublicationsResponse{Publications: []*tempelv1.Publication{
			{PublicationTime: 1700000000, PublishedHash: sha256Imprint, PublicationString: "AAAAAA-..."},
		}},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(ctx, tc.method, hs.URL+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := hs.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s %s: %s: %s", tc.method, tc.path, resp.Status, body)
			}
			got := tc.want.ProtoReflect().New().Interface()
			if err := protojson.Unmarshal(body, got); err != nil {
				t.Fatalf("response %s: %v", body, err)
			}
			if diff := cmp.Diff(tc.want, got, protocmp.Transform()); diff != "" {
				t.Errorf("%s %s (-want +got):\n%s", tc.method, tc.path, diff)
			}
		})
	}
}
