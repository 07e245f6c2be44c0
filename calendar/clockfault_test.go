package calendar

import (
	"errors"
	"testing"
	"time"
)

// TestClockFaultPausesSeconds: while the clock is untrusted no second is
// closed, even with the clock far ahead; once trusted again the seconds
// missed are closed as empty leaves and submissions are answered.
func TestClockFaultPausesSeconds(t *testing.T) {
	st, err := OpenStore(t.TempDir(), StoreOptions{Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	clock := &fakeClock{t: time.Unix(1_800_000_000, 200e6)}
	svc, err := NewService(ServiceConfig{Store: st, Signer: newRSASigner(t), Now: clock.Now, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	clock.Set(time.Unix(1_800_000_002, 100e6))
	if err, _ := svc.pass(); err != nil {
		t.Fatal(err)
	}
	_, before, _ := st.Head()

	fault := errors.New("clock 3600 s off the NTP server")
	svc.SetClockFault(fault)
	if err := svc.Ready(); !errors.Is(err, ErrNotReady) {
		t.Fatalf("ready with an untrusted clock: %v", err)
	}
	clock.Set(time.Unix(1_800_003_600, 100e6)) // an hour ahead
	if err, _ := svc.pass(); err != nil {
		t.Fatal(err)
	}
	if _, last, _ := st.Head(); last != before {
		t.Fatalf("calendar moved to second %d on an untrusted clock, want it kept at %d", last, before)
	}

	svc.SetClockFault(nil)
	clock.Set(time.Unix(1_800_000_010, 100e6)) // corrected
	if err, _ := svc.pass(); err != nil {
		t.Fatal(err)
	}
	_, last, _ := st.Head()
	if last != 1_800_000_009 {
		t.Fatalf("last second %d after the clock is trusted, want 1800000009", last)
	}
	for sec := before + 1; sec <= last; sec++ {
		if l, err := st.Leaf(sec); err != nil || !l.Equal(EmptyLeaf) {
			t.Fatalf("second %d: leaf %v %v, want empty", sec, l, err)
		}
	}
	if err := svc.Ready(); err != nil {
		t.Fatalf("not ready after the clock is trusted: %v", err)
	}
}
