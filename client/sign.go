package client

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"

	"github.com/tempel-ksi/tempel/internal/round"
	"github.com/tempel-ksi/tempel/ksi"
	tempelv1 "github.com/tempel-ksi/tempel/proto/tempel/v1"
	"github.com/tempel-ksi/tempel/verifier"
)

// Sign returns a signature of hash, the imprint of a document.
func (c *Client) Sign(ctx context.Context, hash ksi.Imprint) (*ksi.Signature, error) {
	return c.SignLevel(ctx, hash, 0)
}

// SignLevel returns a signature of hash at tree level level: 0 for a
// document hash, the tree height when hash is the root of the caller's
// own aggregation tree. The signature is verified with
// [verifier.Internal] against hash and level before it is returned.
//
// hash may be of any algorithm Tempel implements that is not deprecated
// now (ksi.HashAlg.CheckSigning): SHA-256, SHA-384, SHA-512, RIPEMD-160,
// SHA3-224/256/384/512. Others are refused with ErrInvalid before
// anything is sent.
func (c *Client) SignLevel(ctx context.Context, hash ksi.Imprint, level byte) (*ksi.Signature, error) {
	if _, err := ksi.ParseImprint(hash); err != nil {
		return nil, fmt.Errorf("%w: sign: %v", ErrInvalid, err)
	}
	if err := hash.Alg().CheckSigning(uint64(time.Now().Unix())); err != nil {
		return nil, fmt.Errorf("%w: sign: %v", ErrInvalid, err)
	}
	var resp *tempelv1.SignResponse
	var endpoint string
	err := c.call(ctx, "sign", func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		endpoint = cc.Target()
		resp, err = tempelv1.NewSignerClient(cc).Sign(ctx, &tempelv1.SignRequest{Hash: hash, Level: uint32(level)})
		return err
	})
	if err != nil {
		return nil, err
	}
	return checkSignature(ctx, endpoint, resp.Signature, hash, level)
}

// checkSignature parses a server's signature of hash at level and checks
// it with the internal policy: a signature that does not verify is the
// server's fault and never reaches the caller.
func checkSignature(ctx context.Context, endpoint string, b []byte, hash ksi.Imprint, level byte) (*ksi.Signature, error) {
	sig, err := ksi.ParseSignature(b)
	if err != nil {
		return nil, fmt.Errorf("%w: sign via %s: %v", ErrBadResponse, endpoint, err)
	}
	rep := verifier.Verify(ctx, sig, verifier.Internal, verifier.Options{Document: hash, InputLevel: uint64(level)})
	if rep.Result != verifier.OK {
		return nil, fmt.Errorf("%w: sign via %s: signature fails %s (%s): %s", ErrBadResponse, endpoint, rep.Rule, rep.Code, rep.Message)
	}
	return sig, nil
}

// SignMany signs many hashes with one request by local aggregation: the
// hashes, all SHA-256 imprints, become the leaves of a local hash tree
// (ksi.BuildTree), only the tree's root is signed (at the tree's level),
// and each hash's signature is the root's signature with the hash's path
// in the local tree prepended as its lowest aggregation chain. Every
// returned signature has the same aggregation time and verifies against
// its own hash; sigs[i] belongs to hashes[i].
//
// The server sees one request and one leaf whatever the number of hashes,
// so a gateway with many documents per second sends one SignMany per
// batch instead of a Sign per document.
func (c *Client) SignMany(ctx context.Context, hashes []ksi.Imprint) ([]*ksi.Signature, error) {
	switch len(hashes) {
	case 0:
		return nil, nil
	case 1:
		sig, err := c.Sign(ctx, hashes[0])
		if err != nil {
			return nil, err
		}
		return []*ksi.Signature{sig}, nil
	}
	reqs := make([]round.Request, len(hashes))
	for i, h := range hashes {
		if h.Alg() != ksi.SHA2_256 || len(h) != 1+ksi.SHA2_256.Size() {
			return nil, fmt.Errorf("%w: sign many: hash %d is not a SHA-256 imprint", ErrInvalid, i)
		}
		reqs[i] = round.Request{Hash: h}
	}
	r, err := round.Build(ksi.SHA2_256, reqs)
	if err != nil {
		return nil, fmt.Errorf("%w: sign many: %v", ErrInvalid, err)
	}
	root, level := r.Root()
	rootSig, err := c.SignLevel(ctx, root, level)
	if err != nil {
		return nil, err
	}
	// The server's lowest chain starts at level 0 with the root's level
	// in its first level correction; below the local chains it continues
	// from the root's level instead.
	ans, err := round.AnswerFromSignature(rootSig, level)
	if err != nil {
		return nil, fmt.Errorf("%w: sign many: %v", ErrBadResponse, err)
	}
	var w round.Writer
	sigs := make([]*ksi.Signature, len(hashes))
	for i := range hashes {
		b, err := w.AppendSignature(nil, r, i, ans)
		if err != nil {
			return nil, fmt.Errorf("client: sign many: hash %d: %w", i, err)
		}
		if sigs[i], err = ksi.ParseSignature(b); err != nil {
			return nil, fmt.Errorf("client: sign many: hash %d: %w", i, err)
		}
	}
	return sigs, nil
}
