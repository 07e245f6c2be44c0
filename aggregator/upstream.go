package aggregator

import (
	"context"
	"encoding/base64"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/tempel-ksi/tempel/ksi"
	tempelv1 "github.com/tempel-ksi/tempel/proto/tempel/v1"
)

// GRPCUpstream signs round roots at a parent (another aggregator or the
// calendar) through the signing API: the hierarchy is the same code
// composed, a child is just a client of its parent.
type GRPCUpstream struct {
	client tempelv1.SignerClient
	auth   string
}

// NewGRPCUpstream uses conn to reach the parent; login and key, when set,
// are sent as Basic credentials.
func NewGRPCUpstream(conn grpc.ClientConnInterface, login, key string) *GRPCUpstream {
	u := &GRPCUpstream{client: tempelv1.NewSignerClient(conn)}
	if login != "" {
		u.auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(login+":"+key))
	}
	return u
}

// Sign implements Upstream.
func (u *GRPCUpstream) Sign(ctx context.Context, root ksi.Imprint, level byte) ([]byte, error) {
	if u.auth != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", u.auth)
	}
	ctx = metadata.AppendToOutgoingContext(ctx, ChildRoundKey, "1")
	resp, err := u.client.Sign(ctx, &tempelv1.SignRequest{Hash: root, Level: uint32(level)})
	if err != nil {
		return nil, err
	}
	if resp.Status != 0 {
		return nil, fmt.Errorf("upstream status %#x: %s", resp.Status, resp.ErrorMessage)
	}
	return resp.Signature, nil
}

// UpstreamFunc adapts a function (e.g. the in-process calendar) to Upstream.
type UpstreamFunc func(ctx context.Context, root ksi.Imprint, level byte) ([]byte, error)

// Sign implements Upstream.
func (f UpstreamFunc) Sign(ctx context.Context, root ksi.Imprint, level byte) ([]byte, error) {
	return f(ctx, root, level)
}
