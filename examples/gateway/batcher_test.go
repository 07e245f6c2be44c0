package main

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/ksi"
)

// Once run has returned, a caller of Sign fails at once with errStopped
// rather than waiting for an answer nobody will send.
func TestBatcherStoppedAnswers(t *testing.T) {
	b := newBatcher(func(ctx context.Context, hashes []ksi.Imprint) ([]*ksi.Signature, error) {
		return nil, errors.New("test: not reached")
	}, time.Millisecond, 10, 10, 1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b.run(ctx)
	hash, err := ksi.NewImprint(ksi.SHA2_256, make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	if _, err := b.Sign(sctx, hash); !errors.Is(err, errStopped) {
		t.Fatalf("Sign after run returned: %v, want errStopped", err)
	}
}
