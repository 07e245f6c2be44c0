package pdu_test

import (
	"bytes"
	"fmt"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/pdu"
)

// A client builds a signing request; the aggregator parses it, checks the
// HMAC with the user's key and answers with the same algorithm.
func Example() {
	key := []byte("anon")
	hash, _ := ksi.SHA2_256.Digest([]byte("LAPTOP"))
	req := pdu.AggregatorRequest{
		Envelope: pdu.Envelope{Header: pdu.Header{LoginID: "anon"}},
		Requests: []pdu.AggregationRequest{{RequestID: 1, Hash: hash}},
	}
	wire, err := req.Encode(ksi.SHA2_256, key)
	if err != nil {
		panic(err)
	}
	fmt.Printf("request: %d bytes, starts % x\n", len(wire), wire[:4])

	// Server side.
	got, err := pdu.ParseAggregatorRequest(wire)
	if err != nil {
		panic(err)
	}
	if err := got.Verify(key); err != nil {
		fmt.Println("refused:", err)
		return
	}
	fmt.Println("login:", got.Header.LoginID, "hash:", got.Requests[0].Hash)
	if err := got.Verify([]byte("wrong")); err != nil {
		fmt.Println("wrong key:", err)
	}

	resp := pdu.AggregatorResponse{
		Envelope:  pdu.Envelope{Header: pdu.Header{LoginID: got.Header.LoginID}},
		Responses: []pdu.AggregationResponse{{RequestID: got.Requests[0].RequestID, Status: pdu.StatusAggrOverQuota, ErrorMessage: "over quota"}},
	}
	answer, err := resp.Encode(got.HMAC.Alg(), key)
	if err != nil {
		panic(err)
	}
	back, _ := pdu.ParseAggregatorResponse(answer)
	fmt.Printf("response: status %#x %q, verifies: %v\n", back.Responses[0].Status, back.Responses[0].ErrorMessage, back.Verify(key) == nil)
	fmt.Println("same as libksi's aggr_request.tlv prefix:", bytes.HasPrefix(wire, []byte{0x82, 0x20, 0x00, 0x54, 0x01, 0x07, 0x01, 0x05}))
	// Output:
	// request: 88 bytes, starts 82 20 00 54
	// login: anon hash: SHA-256:11a700b0c8066c47ecba05ed37bc14dcadb238552d86c659342d1d7e87b8772d
	// wrong key: pdu: hmac mismatch
	// response: status 0x105 "over quota", verifies: true
	// same as libksi's aggr_request.tlv prefix: true
}
