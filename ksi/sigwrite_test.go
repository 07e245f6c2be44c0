package ksi_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/tlv"
)

// The streamlined writer gives the same bytes as the general encoders
// (ksi.NewAggregationChain inside a tlv.Builder signature), for chains
// with and without an upstream chain index, short and long shapes and
// times, every input length, and links of every kind.
func TestAppendSignatureHeadMatchesBuilder(t *testing.T) {
	meta := &ksi.Metadata{Value: []byte{0x01, 0x05, 'a', 'l', 'i', 'c', 'e'}}
	links := []ksi.Link{
		{Left: true, LevelCorrection: 2, Metadata: meta},
		{Left: false, Sibling: imp(ksi.SHA2_256, 1)},
		{Left: true, LevelCorrection: 300, Sibling: imp(ksi.SHA2_512, 2)},
	}
	var enc []byte
	for i := range links {
		enc = ksi.AppendLinkBytes(enc, &links[i])
	}
	rest := []byte{0x88, 0x02, 0x00, 0x03, 0x01, 0x01, 0x07} // any encoded elements
	for _, h := range []ksi.ChainHead{
		{AggregationTime: 0, Shape: 1, Input: imp(ksi.SHA2_256, 3), Algorithm: ksi.SHA2_256},
		{AggregationTime: 1_700_000_000, ChainIndex: []uint64{3, 5}, Shape: 0b1011, Input: imp(ksi.RIPEMD160, 4), Algorithm: ksi.SHA2_256},
		{AggregationTime: 1 << 62, ChainIndex: []uint64{1 << 40}, Shape: 1<<63 | 1, Input: imp(ksi.SHA3_512, 5), Algorithm: ksi.SHA2_384},
	} {
		chain, err := ksi.NewAggregationChain(h.AggregationTime, append(append([]uint64{}, h.ChainIndex...), h.Shape), h.Input, h.Algorithm, links)
		if err != nil {
			t.Fatal(err)
		}
		b := tlv.NewBuilder(nil)
		b.Begin(ksi.TypeSignature, false, false)
		b.Raw(chain.Raw)
		b.Raw(rest)
		b.End()
		want, err := b.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		l, err := h.Layout(len(enc), len(rest))
		if err != nil {
			t.Fatal(err)
		}
		got := h.AppendSignatureHead([]byte("prefix"), l)
		got = append(append(got, enc...), rest...)
		if !bytes.Equal(got[6:], want) || len(got)-6 != l.Len() {
			t.Fatalf("head %+v:\n got %x (len %d, layout %d)\nwant %x", h, got[6:], len(got)-6, l.Len(), want)
		}
	}
}

func TestLayoutRefusesWhatCannotBeEncoded(t *testing.T) {
	h := ksi.ChainHead{Shape: 1, Input: imp(ksi.SHA2_256, 1), Algorithm: ksi.SHA2_256}
	if _, err := h.Layout(100, tlv.MaxValueLen-200); err != nil {
		t.Fatalf("a signature within the limit: %v", err)
	}
	if _, err := h.Layout(100, tlv.MaxValueLen); err == nil || !strings.Contains(err.Error(), "TLV limit") {
		t.Fatalf("a signature over the TLV limit: %v", err)
	}
	h.Input = make(ksi.Imprint, 256)
	if _, err := h.Layout(0, 0); err == nil || !strings.Contains(err.Error(), "too long") {
		t.Fatalf("a 256-byte input: %v", err)
	}
}

// imp is an imprint of alg with every digest byte set to b.
func imp(alg ksi.HashAlg, b byte) ksi.Imprint {
	return append(ksi.Imprint{byte(alg)}, bytes.Repeat([]byte{b}, alg.Size())...)
}
