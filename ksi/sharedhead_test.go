package ksi_test

import (
	"bytes"
	"testing"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/tlv"
)

// A SharedHead lays out and writes the heads ChainHead does, for every
// shape and input of its round, with integers of every length.
func TestSharedHeadWritesChainHeadBytes(t *testing.T) {
	links := []ksi.Link{{Sibling: imp(ksi.SHA2_256, 1)}, {Left: true, LevelCorrection: 1 << 20, Sibling: imp(ksi.SHA2_512, 2)}}
	var enc []byte
	for i := range links {
		enc = ksi.AppendLinkBytes(enc, &links[i])
	}
	rest := bytes.Repeat([]byte{0x5A}, 300)
	for _, base := range []ksi.ChainHead{
		{AggregationTime: 0, Algorithm: ksi.SHA2_256},
		{AggregationTime: 1_700_000_000, ChainIndex: []uint64{3, 5}, Algorithm: ksi.SHA2_256},
		{AggregationTime: 1<<64 - 1, ChainIndex: []uint64{0, 255, 256, 1 << 40, 1<<64 - 1}, Algorithm: ksi.SHA2_384},
	} {
		shared := base.Shared()
		for _, shape := range []uint64{0, 1, 0xFF, 0x100, 1<<56 - 1, 1 << 56, 1<<63 | 1} {
			for _, input := range []ksi.Imprint{imp(ksi.SHA2_256, 3), imp(ksi.RIPEMD160, 4), imp(ksi.SHA3_512, 5)} {
				h := base
				h.Shape, h.Input = shape, input
				want, err := h.Layout(len(enc), len(rest))
				if err != nil {
					t.Fatal(err)
				}
				l, err := shared.Layout(shape, input, len(enc), len(rest))
				if err != nil || l != want {
					t.Fatalf("head %+v: shared layout %+v (%v), want %+v", h, l, err, want)
				}
				wantBytes := h.AppendSignatureHead([]byte("p"), want)
				if got := shared.AppendSignatureHead([]byte("p"), l, shape, input); !bytes.Equal(got, wantBytes) {
					t.Fatalf("head %+v:\n got %x\nwant %x", h, got, wantBytes)
				}
				sig := append(append(wantBytes[1:], enc...), rest...)
				if len(sig) != l.Len() {
					t.Fatalf("head %+v: %d bytes, laid out %d", h, len(sig), l.Len())
				}
				// And the general encoders agree, integers of every length.
				chain, err := ksi.NewAggregationChain(h.AggregationTime, append(append([]uint64{}, h.ChainIndex...), shape), input, h.Algorithm, links)
				if err != nil {
					t.Fatal(err)
				}
				b := tlv.NewBuilder(nil)
				b.Begin(ksi.TypeSignature, false, false)
				b.Raw(chain.Raw)
				b.Raw(rest)
				b.End()
				if model, err := b.Bytes(); err != nil || !bytes.Equal(sig, model) {
					t.Fatalf("head %+v:\n got %x\nwant %x (%v)", h, sig, model, err)
				}
			}
		}
	}
	empty := (&ksi.ChainHead{}).Shared()
	if _, err := empty.Layout(1, make(ksi.Imprint, 256), 0, 0); err == nil {
		t.Error("a 256-byte input hash is laid out")
	}
	if _, err := empty.Layout(1, imp(ksi.SHA2_256, 1), 10, tlv.MaxValueLen); err == nil {
		t.Error("a signature over the TLV limit is laid out")
	}
}
