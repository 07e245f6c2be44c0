package client_test

import (
	"context"
	"errors"
	"testing"

	"github.com/tempel-ksi/tempel/aggregator"
	"github.com/tempel-ksi/tempel/client"
	"github.com/tempel-ksi/tempel/verifier"
)

// Through a child aggregator, a request at the maximum level clients are
// told (the default, 20) is signed: the child's round root, one metadata
// link and a round tree above it, passes its parent, which bounds child
// roots by the structural limit and clients' own trees by the maximum.
func TestChildAggregatorPassesTheMaximumLevel(t *testing.T) {
	t.Parallel()
	parent := startServer(t, "")
	child, _ := aggregatorNode(t, parent)
	ctx := context.Background()
	const level = aggregator.DefaultMaxLevel
	doc := docHash("TestChildAggregatorPassesTheMaximumLevel")
	sig, err := newClient(t, client.Config{Endpoints: []string{child}}).SignLevel(ctx, doc, level)
	if err != nil {
		t.Fatalf("level %d through a child aggregator: %v", level, err)
	}
	rep := verifier.Verify(ctx, sig, verifier.Internal, verifier.Options{Document: doc, InputLevel: level})
	if rep.Result != verifier.OK {
		t.Fatalf("internal verification at level %d: %s %s: %s", level, rep.Code, rep.Rule, rep.Message)
	}
	// A client's own tree above the maximum is still refused, at the child
	// and at the parent alike.
	for _, at := range []string{child, parent} {
		_, err := newClient(t, client.Config{Endpoints: []string{at}, Retries: -1}).SignLevel(ctx, doc, level+1)
		if !errors.Is(err, client.ErrInvalid) {
			t.Errorf("level %d at %s: %v, want ErrInvalid", level+1, at, err)
		}
	}
}
