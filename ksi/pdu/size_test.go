package pdu_test

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/pdu"
	"github.com/tempel-ksi/tempel/ksi/tlv"
)

// rawElement builds one TLV element of type typ with n value bytes.
func rawElement(t *testing.T, typ uint16, n int) []byte {
	t.Helper()
	b := tlv.NewBuilder(nil)
	b.Bin(typ, bytes.Repeat([]byte{0xAB}, n))
	out, err := b.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// payloadsLen sums the EncodedLen of everything a response carries.
func aggrPayloadsLen(r *pdu.AggregatorResponse) int {
	n := 0
	for i := range r.Responses {
		n += r.Responses[i].EncodedLen()
	}
	if r.Error != nil {
		n += r.Error.EncodedLen()
	}
	if r.Config != nil {
		n += r.Config.EncodedLen()
	}
	return n
}

// The lengths ResponseLen and EncodedLen compute are what Encode writes,
// for short and long fields (TLV8 and TLV16 headers) and every HMAC size.
func TestEncodedLenIsExact(t *testing.T) {
	for _, alg := range []ksi.HashAlg{ksi.SHA2_256, ksi.SHA2_384, ksi.SHA2_512} {
		for _, big := range []bool{false, true} {
			login, id, msg, elem := "anon", uint64(7), "", 100
			if big {
				login, id, msg, elem = strings.Repeat("L", 300), ^uint64(0), strings.Repeat("m", 300), 2000
			}
			h := pdu.Header{LoginID: login, InstanceID: id, HasInstanceID: big, MessageID: id, HasMessageID: big}
			ar := &pdu.AggregatorResponse{Envelope: pdu.Envelope{Header: h},
				Responses: []pdu.AggregationResponse{
					{RequestID: id, Status: 0, SignatureElements: [][]byte{rawElement(t, 0x801, elem), rawElement(t, 0x802, 40)}},
					{RequestID: 0, Status: pdu.StatusInternalError, ErrorMessage: msg + "x"},
				},
				Error:  &pdu.ErrorPayload{Status: 0x103, Message: msg},
				Config: &pdu.Config{MaxLevel: id, HasMaxLevel: true, MaxRequests: 3, HasMaxRequests: true, ParentURIs: []string{msg + "u"}, CalendarLastTime: id, HasCalendarLastTime: big},
			}
			b, err := ar.Encode(alg, []byte("k"))
			if err != nil {
				t.Fatal(err)
			}
			if got := pdu.ResponseLen(&h, alg, aggrPayloadsLen(ar)); got != len(b) {
				t.Errorf("aggregator response %v big=%v: ResponseLen %d, encoded %d", alg, big, got, len(b))
			}
			er := &pdu.ExtenderResponse{Envelope: pdu.Envelope{Header: h},
				Responses: []pdu.ExtendResponse{
					{RequestID: id, CalendarLastTime: id, HasCalendarLastTime: true, CalendarChain: rawElement(t, 0x802, elem)},
					{RequestID: 1, Status: 0x105, ErrorMessage: msg + "y", HasCalendarLastTime: big},
				}}
			b, err = er.Encode(alg, []byte("k"))
			if err != nil {
				t.Fatal(err)
			}
			if got := pdu.ResponseLen(&h, alg, er.Responses[0].EncodedLen()+er.Responses[1].EncodedLen()); got != len(b) {
				t.Errorf("extender response %v big=%v: ResponseLen %d, encoded %d", alg, big, got, len(b))
			}
		}
	}
}

// MaxResponses is the real limit: that many worst-case payloads encode
// with the longest HMAC, any ids and a full config; one more does not.
func TestMaxResponsesIsTheLimit(t *testing.T) {
	for _, payload := range []int{300, 1213, 4324, 6428, 30000} {
		login := "some-login"
		n := pdu.MaxResponses(login, payload)
		// A signature element of the size that makes each payload exactly
		// payload bytes with 8-byte ids and statuses.
		// (payload header 4, request id and status 10 each, element header 4).
		elem := payload - 4 - 2*(2+8) - 4
		if pdu.MaxAggregationResponseLen(len(rawElement(t, 0x801, elem))) != payload {
			t.Fatalf("payload %d: could not build a payload of that size", payload)
		}
		build := func(k int) *pdu.AggregatorResponse {
			r := &pdu.AggregatorResponse{Envelope: pdu.Envelope{Header: pdu.Header{LoginID: login,
				InstanceID: ^uint64(0), HasInstanceID: true, MessageID: ^uint64(0), HasMessageID: true}},
				Config: &pdu.Config{MaxLevel: ^uint64(0), HasMaxLevel: true, AggregationAlgorithm: ksi.SHA2_256, HasAggregationAlgorithm: true,
					AggregationPeriodMS: ^uint64(0), HasAggregationPeriodMS: true, MaxRequests: ^uint64(0), HasMaxRequests: true,
					CalendarFirstTime: ^uint64(0), HasCalendarFirstTime: true, CalendarLastTime: ^uint64(0), HasCalendarLastTime: true}}
			for i := 0; i < k; i++ {
				r.Responses = append(r.Responses, pdu.AggregationResponse{RequestID: ^uint64(0) - uint64(i), Status: ^uint64(0),
					SignatureElements: [][]byte{rawElement(t, 0x801, elem)}})
			}
			return r
		}
		if n < 1 {
			t.Fatalf("payload %d: no response fits", payload)
		}
		if _, err := build(n).Encode(ksi.SHA2_512, []byte("k")); err != nil {
			t.Errorf("payload %d: %d responses do not encode: %v", payload, n, err)
		}
		if _, err := build(n+1).Encode(ksi.SHA2_512, []byte("k")); err == nil {
			t.Errorf("payload %d: %d responses encode, MaxResponses says %d", payload, n+1, n)
		}
	}
	if n := pdu.MaxResponses("x", pdu.MaxSize); n != 0 {
		t.Errorf("a payload of the whole PDU fits %d times", n)
	}
}

func TestTruncateMessage(t *testing.T) {
	long := strings.Repeat("é", pdu.MaxErrorMessageLen) // 2 bytes each
	for _, tc := range []struct{ in, want string }{
		{"short", "short"},
		{"nul\x00 and \xff bad", "nul? and ? bad"},
		{long, long[:pdu.MaxErrorMessageLen]},
		{"a" + long, "a" + long[:pdu.MaxErrorMessageLen-2]},
	} {
		got := pdu.TruncateMessage(tc.in)
		if got != tc.want || len(got) > pdu.MaxErrorMessageLen || !utf8.ValidString(got) {
			t.Errorf("TruncateMessage(%.20q) = %.20q (%d bytes), want %.20q", tc.in, got, len(got), tc.want)
		}
	}
	// A cut message encodes within the documented error-response bound.
	r := pdu.AggregationResponse{RequestID: ^uint64(0), Status: ^uint64(0), ErrorMessage: pdu.TruncateMessage(strings.Repeat("x", 5000))}
	if r.EncodedLen() > pdu.MaxAggregationResponseLen(pdu.MaxErrorMessageLen+4) {
		t.Errorf("error response of %d bytes over its bound", r.EncodedLen())
	}
	e := pdu.ExtendResponse{RequestID: ^uint64(0), Status: ^uint64(0), CalendarLastTime: ^uint64(0), HasCalendarLastTime: true,
		ErrorMessage: pdu.TruncateMessage(strings.Repeat("x", 5000))}
	if e.EncodedLen() > pdu.MaxExtendResponseLen(pdu.MaxErrorMessageLen+4) {
		t.Errorf("extend error response of %d bytes over its bound", e.EncodedLen())
	}
}
