package calendar

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/verifier"
)

// rsaSigner signs calendar roots with a real RSA key.
type rsaSigner struct{ key *rsa.PrivateKey }

func newRSASigner(t testing.TB) *rsaSigner {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return &rsaSigner{k}
}

func (s *rsaSigner) SignCalendarRoot(pd []byte) (ksi.SignatureData, error) {
	d := sha256.Sum256(pd)
	v, err := rsa.SignPKCS1v15(rand.Reader, s.key, crypto.SHA256, d[:])
	return ksi.SignatureData{Type: "1.2.840.113549.1.1.11", Value: v, CertificateID: []byte{1, 2, 3, 4}}, err
}

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

func (s *Service) pendingCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, p := range s.pending {
		n += len(p)
	}
	return n
}

// waitPending waits until n submissions are queued.
func waitPending(t *testing.T, s *Service, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.pendingCount() < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d submissions queued", s.pendingCount(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// closeAt moves the clock to t and closes what is due then.
func closeAt(t *testing.T, s *Service, clock *fakeClock, at time.Time) {
	t.Helper()
	clock.Set(at)
	if err := s.closeDue(); err != nil {
		t.Fatal(err)
	}
}

// nextSigned waits for a submission's answer and parses its signature.
func nextSigned(t *testing.T, res <-chan signed) (signed, *ksi.Signature) {
	t.Helper()
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	sig, err := ksi.ParseSignature(r.sig)
	if err != nil {
		t.Fatal(err)
	}
	return r, sig
}

// signingTime waits for a submission's answer and returns the second it
// was signed in.
func signingTime(t *testing.T, res <-chan signed) uint64 {
	t.Helper()
	_, sig := nextSigned(t, res)
	return sig.SigningTime()
}

type signed struct {
	hash  ksi.Imprint
	level byte
	sig   []byte
	err   error
}

func submitMany(s *Service, n int, base uint64) <-chan signed {
	out := make(chan signed, n)
	for i := 0; i < n; i++ {
		go func() {
			h := leafFor(base + uint64(i))
			lvl := byte(i % 5)
			sig, err := s.Sign(context.Background(), h, lvl, "aggregator-"+string(rune('a'+i%3)))
			out <- signed{h, lvl, sig, err}
		}()
	}
	return out
}

func TestServiceSecondLoop(t *testing.T) {
	st := openTest(t, t.TempDir())
	defer st.Close()
	signer := newRSASigner(t)
	clock := &fakeClock{t: time.Unix(1_800_000_000, 200e6)}
	svc, err := NewService(ServiceConfig{Store: st, Signer: signer, Now: clock.Now, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	res := submitMany(svc, 20, 0)
	waitPending(t, svc, 20)
	// The second is still open: nothing may be answered or appended.
	if err := svc.closeDue(); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := st.Head(); ok {
		t.Fatal("a second was appended before it ended")
	}
	closeAt(t, svc, clock, time.Unix(1_800_000_001, 60e6)) // past the end plus grace
	if f, l, ok := st.Head(); !ok || f != 1_800_000_000 || l != 1_800_000_000 {
		t.Fatalf("head %d %d %v", f, l, ok)
	}
	for i := 0; i < 20; i++ {
		r, sig := nextSigned(t, res)
		rep := verifier.Verify(context.Background(), sig, verifier.Internal, verifier.Options{Document: r.hash, InputLevel: uint64(r.level)})
		if rep.Result != verifier.OK {
			t.Fatalf("internal verification: %s %s", rep.Code, rep.Message)
		}
		if sig.SigningTime() != 1_800_000_000 {
			t.Fatalf("signing time %d", sig.SigningTime())
		}
		ar := sig.CalendarAuthRecord
		d := sha256.Sum256(ar.PublishedData.Raw)
		if err := rsa.VerifyPKCS1v15(&signer.key.PublicKey, crypto.SHA256, d[:], ar.SignatureData.Value); err != nil {
			t.Fatalf("calendar authentication record: %v", err)
		}
	}
	// A submission after the second closed goes into the next one.
	clock.Set(time.Unix(1_800_000_001, 10e6)) // within the grace of second …000: already closed
	res = submitMany(svc, 1, 100)
	waitPending(t, svc, 1)
	closeAt(t, svc, clock, time.Unix(1_800_000_002, 60e6))
	if got := signingTime(t, res); got != 1_800_000_001 {
		t.Fatalf("late submission signed at %d, want the next second", got)
	}
}

func TestServiceClockStepsBackAndGaps(t *testing.T) {
	dir := t.TempDir()
	st := openTest(t, dir)
	clock := &fakeClock{t: time.Unix(1_800_000_000, 500e6)}
	svc, _ := NewService(ServiceConfig{Store: st, Signer: newRSASigner(t), Now: clock.Now, Logger: discardLogger()})
	closeAt(t, svc, clock, time.Unix(1_800_000_005, 100e6))
	_, last, _ := st.Head()
	if last != 1_800_000_004 {
		t.Fatalf("last %d, want 1800000004", last)
	}
	// The clock steps back 3 s: nothing is appended, readiness says why,
	// and submissions are refused at once instead of waiting 3 s.
	clock.Set(time.Unix(1_800_000_002, 0))
	if err := svc.Ready(); err == nil || !strings.Contains(err.Error(), "waiting for the clock (3 s behind") {
		t.Fatalf("ready with the clock 3 s behind: %v", err)
	}
	if _, err := svc.Sign(context.Background(), leafFor(1), 0, "x"); !errors.Is(err, ErrNotReady) {
		t.Fatalf("submission with the clock behind: %v, want ErrNotReady", err)
	}
	if err := svc.closeDue(); err != nil {
		t.Fatal(err)
	}
	if _, l, _ := st.Head(); l != last {
		t.Fatalf("appended while the clock was behind: last %d", l)
	}
	// Within a second of the calendar, submissions wait for the next open
	// second; it is appended once, with no gap.
	clock.Set(time.Unix(1_800_000_004, 600e6))
	if err := svc.Ready(); err != nil {
		t.Fatalf("not ready 0.4 s behind: %v", err)
	}
	res := submitMany(svc, 1, 7)
	waitPending(t, svc, 1)
	closeAt(t, svc, clock, time.Unix(1_800_000_006, 100e6))
	if got := signingTime(t, res); got != 1_800_000_005 {
		t.Fatalf("signed at %d, want 1800000005", got)
	}
	if err := st.Check(); err != nil {
		t.Fatal(err)
	}
	st.Close()

	// Down for 100 s: on restart the missed seconds become empty leaves.
	st = openTest(t, dir)
	defer st.Close()
	clock.Set(time.Unix(1_800_000_106, 100e6))
	svc, _ = NewService(ServiceConfig{Store: st, Signer: newRSASigner(t), Now: clock.Now, Logger: discardLogger()})
	if err := svc.closeDue(); err != nil {
		t.Fatal(err)
	}
	if _, l, _ := st.Head(); l != 1_800_000_105 {
		t.Fatalf("after restart last %d, want 1800000105", l)
	}
	for sec := uint64(1_800_000_006); sec <= 1_800_000_105; sec++ {
		if l, err := st.Leaf(sec); err != nil || !l.Equal(EmptyLeaf) {
			t.Fatalf("leaf %d: %v %v", sec, l, err)
		}
	}
}

func TestServiceStopFailsPending(t *testing.T) {
	st := openTest(t, t.TempDir())
	defer st.Close()
	svc, _ := NewService(ServiceConfig{Store: st, Signer: newRSASigner(t), Logger: discardLogger()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- svc.Run(ctx) }()
	res := submitMany(svc, 3, 0)
	waitPending(t, svc, 1)
	cancel()
	<-done
	for i := 0; i < 3; i++ {
		select {
		case r := <-res:
			if r.err == nil && r.sig == nil {
				t.Fatal("no answer and no error")
			}
			if r.err != nil && !errors.Is(r.err, ErrStopped) {
				t.Fatalf("unexpected error %v", r.err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("pending submission not answered at shutdown")
		}
	}
}

// A reserved slot keeps its second open past the grace period until the
// root arrives (then it is signed in that second), a released slot lets
// the second close at once, and a slot held past MaxHold does not stop
// the calendar: its root goes into the next second.
func TestServiceSlots(t *testing.T) {
	st := openTest(t, t.TempDir())
	defer st.Close()
	clock := &fakeClock{t: time.Unix(1_800_000_000, 990e6)}
	svc, err := NewService(ServiceConfig{Store: st, Signer: newRSASigner(t), Now: clock.Now, Logger: discardLogger(), MaxHold: 400 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	slot := svc.Reserve() // a round closing near the end of second …000
	closeAt(t, svc, clock, time.Unix(1_800_000_001, 200e6))
	if _, _, ok := st.Head(); ok {
		t.Fatal("second closed while a slot in it was held")
	}
	res := make(chan signed, 1)
	go func() {
		h := leafFor(7)
		sig, err := slot.Sign(context.Background(), h, 3, "aggregator")
		res <- signed{hash: h, level: 3, sig: sig, err: err}
	}()
	waitPending(t, svc, 1)
	closeAt(t, svc, clock, clock.Now())
	if got := signingTime(t, res); got != 1_800_000_000 {
		t.Fatalf("root in a reserved slot signed at %d, want the slot's second", got)
	}

	// Released: second …001 closes after its grace as if never held.
	svc.Reserve().Release()
	closeAt(t, svc, clock, time.Unix(1_800_000_002, 60e6))
	if _, last, _ := st.Head(); last != 1_800_000_001 {
		t.Fatalf("released slot: last second %d, want 1800000001", last)
	}

	// Held too long: second …002 closes at MaxHold; the root is late.
	late := svc.Reserve()
	closeAt(t, svc, clock, time.Unix(1_800_000_003, 300e6))
	if _, last, _ := st.Head(); last != 1_800_000_001 {
		t.Fatal("closed 300ms after its end with a slot held: should wait up to MaxHold")
	}
	closeAt(t, svc, clock, time.Unix(1_800_000_003, 410e6))
	if _, last, _ := st.Head(); last != 1_800_000_002 {
		t.Fatalf("held past MaxHold: last second %d, want 1800000002", last)
	}
	go func() {
		h := leafFor(8)
		sig, err := late.Sign(context.Background(), h, 0, "aggregator")
		res <- signed{hash: h, sig: sig, err: err}
	}()
	waitPending(t, svc, 1)
	closeAt(t, svc, clock, time.Unix(1_800_000_004, 60e6))
	if got := signingTime(t, res); got != 1_800_000_003 {
		t.Fatalf("late root signed at %d, want the next open second", got)
	}
}

func TestServiceCloseEarly(t *testing.T) {
	st := openTest(t, t.TempDir())
	defer st.Close()
	clock := &fakeClock{t: time.Unix(1_800_000_000, 500e6)}
	svc, err := NewService(ServiceConfig{Store: st, Signer: newRSASigner(t), Now: clock.Now, Logger: discardLogger(),
		Grace: 20 * time.Millisecond, CloseEarly: true})
	if err != nil {
		t.Fatal(err)
	}
	// A slot reserved before the second ends is not its last: the
	// second still waits for its grace after the slot is used.
	early := svc.Reserve()
	res := make(chan signed, 2)
	sign := func(sl *Slot, n uint64) {
		h := leafFor(n)
		sig, err := sl.Sign(context.Background(), h, 0, "aggregator")
		res <- signed{hash: h, sig: sig, err: err}
	}
	go sign(early, 1)
	waitPending(t, svc, 1)
	closeAt(t, svc, clock, time.Unix(1_800_000_001, 5e6))
	if _, _, ok := st.Head(); ok {
		t.Fatal("closed before its grace without a slot reserved after its end")
	}
	// The round that closes as the second ends reserves after the end:
	// once its slot is used, the second closes without waiting.
	clock.Set(time.Unix(1_800_000_001, 6e6))
	last := svc.Reserve()
	go sign(last, 2)
	waitPending(t, svc, 2)
	closeAt(t, svc, clock, time.Unix(1_800_000_001, 7e6))
	if _, lastSec, _ := st.Head(); lastSec != 1_800_000_000 {
		t.Fatal("second not closed when the slot reserved after its end was used")
	}
	for range 2 {
		if got := signingTime(t, res); got != 1_800_000_000 {
			t.Fatalf("signed at %d, want 1800000000", got)
		}
	}
	// The next second, without any slot, closes after its grace again.
	closeAt(t, svc, clock, time.Unix(1_800_000_002, 10e6))
	if _, lastSec, _ := st.Head(); lastSec != 1_800_000_000 {
		t.Fatalf("second …001 closed within its grace: last %d", lastSec)
	}
	closeAt(t, svc, clock, time.Unix(1_800_000_002, 20e6))
	if _, lastSec, _ := st.Head(); lastSec != 1_800_000_001 {
		t.Fatalf("second …001 not closed after its grace: last %d", lastSec)
	}
	// A slot released unused may still send its root without a slot, so
	// its second waits its grace even after a last slot is used.
	clock.Set(time.Unix(1_800_000_002, 900e6))
	svc.Reserve().Release()
	clock.Set(time.Unix(1_800_000_003, 1e6))
	go sign(svc.Reserve(), 3)
	waitPending(t, svc, 1)
	closeAt(t, svc, clock, time.Unix(1_800_000_003, 2e6))
	if _, lastSec, _ := st.Head(); lastSec != 1_800_000_001 {
		t.Fatalf("second …002 closed early although a slot in it was released unused: last %d", lastSec)
	}
	closeAt(t, svc, clock, time.Unix(1_800_000_003, 20e6))
	if got := signingTime(t, res); got != 1_800_000_002 {
		t.Fatalf("signed at %d, want 1800000002", got)
	}
}

// TestServiceCatchUpInFewWrites: after a restart (or a fault) the seconds
// missed meanwhile, with nothing to answer, are filled together with the
// next one to close, in a few synced writes, not two per missed second:
// a calendar down for a day would otherwise take minutes of fsyncs to
// become ready again. A second with submissions is still closed on its
// own, with them.
func TestServiceCatchUpInFewWrites(t *testing.T) {
	dir := t.TempDir()
	st := openTest(t, dir)
	if _, err := st.Append(1_800_000_000, leafFor(0)); err != nil {
		t.Fatal(err)
	}
	wm, _, err := OpenWatermark(filepath.Join(t.TempDir(), "watermark"), true)
	if err != nil {
		t.Fatal(err)
	}
	defer wm.Close()
	const down = 5000
	clock := &fakeClock{t: time.Unix(1_800_000_000+down, 500e6)}
	svc, _ := NewService(ServiceConfig{Store: st, Signer: newRSASigner(t), Watermark: wm, Now: clock.Now, Logger: discardLogger()})
	before := st.appends.Load()
	if err := svc.closeDue(); err != nil {
		t.Fatal(err)
	}
	if n := st.appends.Load() - before; n > 2 {
		t.Fatalf("%d writes to catch up %d seconds", n, down)
	}
	_, last, _ := st.Head()
	if last != 1_800_000_000+down-1 || wm.Mark().Last != last {
		t.Fatalf("caught up to %d (mark %d), want %d", last, wm.Mark().Last, 1_800_000_000+down-1)
	}
	// Submissions queued for a second are answered in it even when later
	// seconds are due as well.
	res := submitMany(svc, 2, 11)
	waitPending(t, svc, 2)
	clock.Set(time.Unix(1_800_000_000+down+30, 500e6))
	if err := svc.closeDue(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if got := signingTime(t, res); got != 1_800_000_000+down {
			t.Fatalf("signed at %d, want %d", got, 1_800_000_000+down)
		}
	}
	if _, last, _ = st.Head(); last != 1_800_000_000+down+29 {
		t.Fatalf("last %d, want %d", last, 1_800_000_000+down+29)
	}
	if err := st.Check(); err != nil {
		t.Fatal(err)
	}
	st.Close()
}
