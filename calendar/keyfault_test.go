package calendar

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/ksi"
)

// failingSigner stands in for a key whose token goes away and comes back
// (the real token is tested in internal/hsm and cli's hsm script).
type failingSigner struct {
	inner *rsaSigner
	gone  atomic.Bool
	calls atomic.Int64
}

func (f *failingSigner) SignCalendarRoot(pd []byte) (ksi.SignatureData, error) {
	f.calls.Add(1)
	if f.gone.Load() {
		return ksi.SignatureData{}, errors.New("the token is unavailable")
	}
	return f.inner.SignCalendarRoot(pd)
}

// TestKeyFaultNotReady: a calendar whose key fails is not ready, naming
// the key, until a probe (at most once a second) finds it signing again.
func TestKeyFaultNotReady(t *testing.T) {
	st, err := OpenStore(t.TempDir(), StoreOptions{Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	signer := &failingSigner{inner: newRSASigner(t)}
	clock := &fakeClock{t: time.Unix(1_800_000_000, 200e6)}
	svc, err := NewService(ServiceConfig{Store: st, Signer: signer, Now: clock.Now, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	clock.Set(time.Unix(1_800_000_002, 100e6))
	if err, _ := svc.pass(); err != nil {
		t.Fatal(err)
	}

	signer.gone.Store(true)
	res := submitMany(svc, 2, 10)
	waitPending(t, svc, 2)
	clock.Set(time.Unix(1_800_000_003, 100e6))
	if err, _ := svc.pass(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if r := <-res; r.err == nil || !strings.Contains(r.err.Error(), "token is unavailable") {
			t.Fatalf("answer while the key fails: %v", r.err)
		}
	}
	if err := svc.Ready(); !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), "calendar key cannot sign") {
		t.Fatalf("ready with a failing key: %v", err)
	}
	// No probe before a second has passed, one after.
	calls := signer.calls.Load()
	clock.Set(time.Unix(1_800_000_003, 600e6))
	svc.pass()
	if got := signer.calls.Load(); got != calls {
		t.Fatalf("key tried %d times within a second of its failure", got-calls)
	}
	clock.Set(time.Unix(1_800_000_004, 200e6))
	svc.pass()
	if got := signer.calls.Load(); got != calls+1 {
		t.Fatalf("key tried %d times a second after its failure, want 1", got-calls)
	}
	if err := svc.Ready(); !errors.Is(err, ErrNotReady) {
		t.Fatalf("ready while the key still fails: %v", err)
	}

	signer.gone.Store(false)
	clock.Set(time.Unix(1_800_000_005, 300e6))
	svc.pass()
	if err := svc.Ready(); err != nil {
		t.Fatalf("not ready once the key signs again: %v", err)
	}
	res = submitMany(svc, 1, 20)
	waitPending(t, svc, 1)
	clock.Set(time.Unix(1_800_000_006, 100e6))
	if err, _ := svc.pass(); err != nil {
		t.Fatal(err)
	}
	if r := <-res; r.err != nil {
		t.Fatalf("after the key is back: %v", r.err)
	}
}
