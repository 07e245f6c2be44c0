package pdu_test

import (
	"bytes"
	"testing"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/pdu"
	"github.com/tempel-ksi/tempel/ksi/tlv"
)

// benchRequest is a typical ksi-tool signing request: one SHA-256 hash.
func benchRequest(b *testing.B) []byte {
	r := pdu.AggregatorRequest{
		Envelope: pdu.Envelope{Header: pdu.Header{LoginID: "anon", InstanceID: 1, HasInstanceID: true, MessageID: 2, HasMessageID: true}},
		Requests: []pdu.AggregationRequest{{RequestID: 1, Hash: append([]byte{1}, bytes.Repeat([]byte{0x5A}, 32)...)}},
	}
	out, err := r.Encode(ksi.SHA2_256, []byte("anon"))
	if err != nil {
		b.Fatal(err)
	}
	return out
}

func BenchmarkParseAggregatorRequest(b *testing.B) {
	in := benchRequest(b)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := pdu.ParseAggregatorRequest(in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyAggregatorRequest(b *testing.B) {
	r, err := pdu.ParseAggregatorRequest(benchRequest(b))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := r.Verify([]byte("anon")); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeAggregatorResponse encodes a response carrying signature
// elements of the size of a real signature (about 2.3 kB: three
// aggregation chains, a calendar chain and an authentication record).
func BenchmarkEncodeAggregatorResponse(b *testing.B) {
	elem := func(typ uint16, n int) []byte {
		e, err := tlv.Encode(typ, false, false, bytes.Repeat([]byte{0x07}, n))
		if err != nil {
			b.Fatal(err)
		}
		return e
	}
	r := pdu.AggregatorResponse{
		Envelope: pdu.Envelope{Header: pdu.Header{LoginID: "anon", InstanceID: 1, HasInstanceID: true, MessageID: 2, HasMessageID: true}},
		Responses: []pdu.AggregationResponse{{
			RequestID:         1,
			SignatureElements: [][]byte{elem(0x801, 400), elem(0x801, 400), elem(0x801, 300), elem(0x802, 900), elem(0x805, 350)},
		}},
	}
	out, err := r.Encode(ksi.SHA2_256, []byte("anon"))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(out)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Encode(ksi.SHA2_256, []byte("anon")); err != nil {
			b.Fatal(err)
		}
	}
}
