package tsp_test

import (
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"math/big"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/tsp"
)

// The life of a token: parse the request, fix the content for the second
// it will be aggregated in, sign with the TSA key while the round runs,
// then embed the round's KSI signature of Draft.Document.
func ExampleSigner_Draft() {
	t := &testing.T{} // the test helpers' TSA and aggregation
	tsa := newTSA(t, "ecdsa")
	h := sha256.Sum256([]byte("the document\n"))
	reqDER := request{version: 1, hashOID: oidSHA256, digest: h[:], nonce: []byte{0x2a}, certReq: []byte{1}}.der()

	req, err := tsp.ParseRequest(reqDER)
	if err != nil {
		fmt.Println(tsp.Rejection(err.(*tsp.Failure)) != nil)
		return
	}
	second := time.Now().Truncate(time.Second) // the round's calendar second
	d, err := tsa.signer.Draft(req, big.NewInt(1), second)
	if err != nil {
		panic(err)
	}
	sig, err := d.Sign() // concurrently with the round
	if err != nil {
		panic(err)
	}
	ksig := ksiSign(t, d.Document(), uint64(second.Unix())) // what the round answers
	resp, err := d.Response(sig, ksig)
	if err != nil {
		panic(err)
	}

	tok, err := tsp.ParseResponse(resp)
	if err != nil {
		panic(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(tsa.root)
	fmt.Println("genTime is the second:", tok.GenTime.Equal(second), "policy:", tok.Policy)
	fmt.Println("TSA layer:", tok.VerifyTSA(roots, nil, time.Time{}))
	_, err = tok.KSI()
	fmt.Println("KSI layer:", err)
	// Output:
	// genTime is the second: true policy: 0.4.0.2023.1.1
	// TSA layer: <nil>
	// KSI layer: <nil>
}
