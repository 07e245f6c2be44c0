package calendar

import (
	"context"
	"errors"
	"testing"
	"time"
)

// One submission whose level leaves no room for the second's top tree
// must be refused at once, never fail the tree, and with it every other
// submission of that second.
func TestServiceRefusesLevelWithoutRoom(t *testing.T) {
	st := openTest(t, t.TempDir())
	defer st.Close()
	clock := &fakeClock{t: time.Unix(1_800_000_000, 200e6)}
	svc, err := NewService(ServiceConfig{Store: st, Signer: newRSASigner(t), Now: clock.Now, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if max := svc.MaxLevel(); max < 200 || max > 254 {
		t.Fatalf("max level %d", max)
	}
	res := submitMany(svc, 3, 0)
	high := make(chan error, 1)
	go func() {
		_, err := svc.Sign(context.Background(), leafFor(99), 254, "greedy")
		high <- err
	}()
	waitPending(t, svc, 3)
	closeAt(t, svc, clock, time.Unix(1_800_000_001, 60e6))
	for range 3 {
		nextSigned(t, res) // fails the test if the second failed
	}
	if err := <-high; !errors.Is(err, ErrLevelTooHigh) {
		t.Fatalf("a root at level 254: %v, want ErrLevelTooHigh", err)
	}
	if _, err := svc.Sign(context.Background(), leafFor(98), svc.MaxLevel()+1, "greedy"); !errors.Is(err, ErrLevelTooHigh) {
		t.Fatalf("a root at level %d: %v, want ErrLevelTooHigh", svc.MaxLevel()+1, err)
	}
}
