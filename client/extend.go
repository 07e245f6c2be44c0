package client

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/tlv"
	tempelv1 "github.com/tempel-ksi/tempel/proto/tempel/v1"
	"github.com/tempel-ksi/tempel/verifier"
)

// Extend turns sig into a publication-based signature: it asks the
// extender for the calendar chain from sig's second to the publication's
// second, checks the chain against sig and the publication (see
// [Client.ExtendTo]; in addition the chain's output must equal the
// published hash) and returns sig with the chain and the publication
// record in place of its calendar chain and authentication record.
//
// pubRecord is a publication the caller trusts, typically from a verified
// publications file (its 0x703 records are accepted).
func (c *Client) Extend(ctx context.Context, sig *ksi.Signature, pubRecord *ksi.PublicationRecord) (*ksi.Signature, error) {
	if sig == nil || pubRecord == nil {
		return nil, fmt.Errorf("%w: extend: nil signature or publication record", ErrInvalid)
	}
	if pubRecord.Data.Time < sig.SigningTime() {
		return nil, fmt.Errorf("%w: extend: publication time %d precedes the signing time %d", ErrInvalid, pubRecord.Data.Time, sig.SigningTime())
	}
	chain, err := c.ExtendTo(ctx, sig, pubRecord.Data.Time)
	if err != nil {
		return nil, err
	}
	var h ksi.Hasher
	out, err := chain.Output(&h)
	if err != nil {
		return nil, fmt.Errorf("%w: extend: calendar chain output: %v", ErrBadResponse, err)
	}
	if !out.Equal(pubRecord.Data.Hash) {
		return nil, &ChainMismatchError{Check: "output hash", Got: out.String(), Want: pubRecord.Data.Hash.String() + " (the published hash)"}
	}
	ext, err := sig.Extend(chain, pubRecord)
	if err != nil {
		return nil, fmt.Errorf("client: extend: %w", err)
	}
	return ext, nil
}

// ExtendTo returns the calendar chain from sig's second to the calendar
// root of pubTime (0: the newest second), checked against sig: its input
// is sig's calendar chain input (or, for a signature without one, the
// output of its aggregation chains), its aggregation time is sig's
// signing time, its publication time is pubTime when set, and its right
// links equal those of sig's calendar chain, if any. A failed check is a
// [*ChainMismatchError].
func (c *Client) ExtendTo(ctx context.Context, sig *ksi.Signature, pubTime uint64) (*ksi.CalendarChain, error) {
	if sig == nil {
		return nil, fmt.Errorf("%w: extend: nil signature", ErrInvalid)
	}
	// The chain is checked against the signature at each endpoint, so
	// that a chain of another calendar never wins over a matching one.
	check := func(reply proto.Message) error {
		r, ok := reply.(*tempelv1.ExtendResponse)
		if !ok {
			return nil
		}
		chain, err := parseChain(r.CalendarChain)
		if err != nil {
			return err
		}
		return checkChain(sig, chain, pubTime)
	}
	chain, err := c.extendChecked(ctx, sig.SigningTime(), pubTime, check)
	if err != nil {
		return nil, err
	}
	if err := checkChain(sig, chain, pubTime); err != nil {
		return nil, err
	}
	return chain, nil
}

func checkChain(sig *ksi.Signature, chain *ksi.CalendarChain, pubTime uint64) error {
	var input ksi.Imprint
	if sig.CalendarChain != nil {
		input = sig.CalendarChain.InputHash
	} else {
		var h ksi.Hasher
		var out ksi.ChainResult
		for _, ch := range sig.Chains() {
			var err error
			if out, err = ch.Output(&h, out.Level); err != nil {
				return fmt.Errorf("client: extend: signature's aggregation chains: %w", err)
			}
		}
		input = out.Hash
	}
	if !chain.InputHash.Equal(input) {
		return &ChainMismatchError{Check: "input hash", Got: chain.InputHash.String(), Want: input.String()}
	}
	if chain.AggregationTime != sig.SigningTime() {
		return &ChainMismatchError{Check: "aggregation time", Got: strconv.FormatUint(chain.AggregationTime, 10), Want: strconv.FormatUint(sig.SigningTime(), 10)}
	}
	if pubTime != 0 && chain.PublicationTime != pubTime {
		return &ChainMismatchError{Check: "publication time", Got: strconv.FormatUint(chain.PublicationTime, 10), Want: strconv.FormatUint(pubTime, 10)}
	}
	if sig.CalendarChain != nil && !ksi.RightLinksEqual(chain.Links, sig.CalendarChain.Links) {
		return &ChainMismatchError{Check: "right links", Got: "links differing from the signature's calendar chain", Want: "the same right links"}
	}
	return nil
}

// extend asks the extender for a calendar chain and parses it.
func (c *Client) extend(ctx context.Context, aggrTime, pubTime uint64) (*ksi.CalendarChain, error) {
	return c.extendChecked(ctx, aggrTime, pubTime, nil)
}

// extendChecked is extend with one more condition an endpoint's answer
// must meet to win.
func (c *Client) extendChecked(ctx context.Context, aggrTime, pubTime uint64, check func(proto.Message) error) (*ksi.CalendarChain, error) {
	var resp *tempelv1.ExtendResponse
	var endpoint string
	err := c.callChecked(ctx, "extend", check, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		endpoint = cc.Target()
		resp, err = tempelv1.NewExtenderClient(cc).Extend(ctx, &tempelv1.ExtendRequest{AggregationTime: aggrTime, PublicationTime: pubTime})
		return err
	})
	if err != nil {
		return nil, err
	}
	chain, err := parseChain(resp.CalendarChain)
	if err != nil {
		return nil, fmt.Errorf("%w: extend via %s: calendar chain: %v", ErrBadResponse, endpoint, err)
	}
	return chain, nil
}

// parseChain parses an encoded calendar chain element.
func parseChain(b []byte) (*ksi.CalendarChain, error) {
	e, err := tlv.ReadOne(b)
	if err != nil {
		return nil, err
	}
	if e.Type != ksi.TypeCalendarChain {
		return nil, fmt.Errorf("element type %#x, want %#x", e.Type, ksi.TypeCalendarChain)
	}
	return ksi.ParseCalendarChain(e)
}

// CalendarExtender adapts a Client to [verifier.Extender], so that the
// verifier's calendar-based policy and publication-based policies with
// extending allowed can fetch calendar chains through it. The chains are
// only parsed and checked for their aggregation time; verifying them is
// the verifier's work.
type CalendarExtender struct {
	Client *Client
}

var _ verifier.Extender = CalendarExtender{}

// Extend implements [verifier.Extender].
func (e CalendarExtender) Extend(ctx context.Context, aggregationTime, pubTime uint64) (*ksi.CalendarChain, error) {
	if e.Client == nil {
		return nil, errors.New("client: CalendarExtender without a Client")
	}
	chain, err := e.Client.extend(ctx, aggregationTime, pubTime)
	if err != nil {
		return nil, err
	}
	if chain.AggregationTime != aggregationTime {
		return nil, &ChainMismatchError{Check: "aggregation time", Got: strconv.FormatUint(chain.AggregationTime, 10), Want: strconv.FormatUint(aggregationTime, 10)}
	}
	return chain, nil
}
