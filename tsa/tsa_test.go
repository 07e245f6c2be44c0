package tsa_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tempel-ksi/tempel/internal/pki"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/tsa"
	"github.com/tempel-ksi/tempel/tsp"
)

func signer(t *testing.T) *tsp.Signer {
	t.Helper()
	set, err := pki.Init(filepath.Join(t.TempDir(), "keys"), pki.InitOptions{TSAKey: pki.TSAKeyECDSA})
	if err != nil {
		t.Fatal(err)
	}
	s, err := set.TSASigner()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func request(t *testing.T) []byte {
	t.Helper()
	d := sha256.Sum256([]byte("a document"))
	imp := append(ksi.Imprint{byte(ksi.SHA2_256)}, d[:]...)
	der, err := tsp.NewRequest(imp, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// A round that keeps landing in another second than the draft named is
// drafted again, each time for the second asked anew, and after
// DefaultMisses more drafts the request fails with timeNotAvailable: no
// token leaves with a genTime other than its aggregation time.
func TestMissesAreBounded(t *testing.T) {
	var asked, drafted atomic.Int64
	r, err := tsa.New(tsa.Config{
		Signer: signer(t),
		NextSecond: func() uint64 {
			return uint64(1_800_000_000 + drafted.Add(1))
		},
		Aggregate: func(ctx context.Context, doc ksi.Imprint) ([]byte, uint64, error) {
			asked.Add(1)
			return nil, 1, nil // always another second
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := r.Respond(context.Background(), request(t))
	if !errors.Is(err, tsa.ErrMissed) {
		t.Fatalf("Respond: %v, want ErrMissed", err)
	}
	if got := asked.Load(); got != tsa.DefaultMisses+1 {
		t.Fatalf("%d drafts aggregated, want %d", got, tsa.DefaultMisses+1)
	}
	if _, perr := tsp.ParseResponse(resp); perr == nil || !strings.Contains(perr.Error(), "timeNotAvailable") {
		t.Fatalf("the answer: %v, want a rejection with timeNotAvailable", perr)
	}
}

// The aggregator's refusal (overload) is the request's failure, with a
// rejection body; a malformed request is a rejection and no error.
func TestFailuresAndRejections(t *testing.T) {
	overloaded := errors.New("too many requests queued")
	r, err := tsa.New(tsa.Config{
		Signer:     signer(t),
		NextSecond: func() uint64 { return 1_800_000_000 },
		Aggregate: func(context.Context, ksi.Imprint) ([]byte, uint64, error) {
			return nil, 0, overloaded
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := r.Respond(context.Background(), request(t))
	if !errors.Is(err, overloaded) {
		t.Fatalf("Respond: %v, want the aggregator's error", err)
	}
	if _, perr := tsp.ParseResponse(resp); perr == nil || !strings.Contains(perr.Error(), "systemFailure") {
		t.Fatalf("the answer: %v, want a rejection with systemFailure", perr)
	}
	resp, err = r.Respond(context.Background(), []byte{0x30, 0x00})
	if err != nil {
		t.Fatalf("a malformed request is the client's: %v", err)
	}
	if _, perr := tsp.ParseResponse(resp); perr == nil {
		t.Fatal("a malformed request was granted")
	}
}
