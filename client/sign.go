package client

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"

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
