package tsp_test

import (
	"math/big"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/tsp"
)

// BenchmarkToken measures one token's work outside aggregation: "build"
// is Draft (TSTInfo, signed attributes, document) plus Response (the
// RFC 3161 record, the ContentInfo in a TimeStampResp), once the KSI signature is known
// and excluding the key operation; "sign" is the key operation alone.
func BenchmarkToken(b *testing.B) {
	r := docRequest()
	r.nonce = []byte{1, 2, 3, 4, 5, 6, 7, 8}
	r.certReq = []byte{1}
	der := r.der()
	gen := time.Unix(1_767_225_600, 0)
	for _, kind := range []struct{ name, key string }{{"rsa2048", "rsa"}, {"ecdsaP256", "ecdsa"}} {
		tsa := newTSA(b, kind.key)
		req, err := tsp.ParseRequest(der)
		if err != nil {
			b.Fatal(err)
		}
		serial := big.NewInt(1_000_000_007)
		d, err := tsa.signer.Draft(req, serial, gen)
		if err != nil {
			b.Fatal(err)
		}
		sig, err := d.Sign()
		if err != nil {
			b.Fatal(err)
		}
		ksig := ksiSign(b, d.Document(), uint64(gen.Unix()))
		b.Run("build/"+kind.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				d, err := tsa.signer.Draft(req, serial, gen)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := d.Response(sig, ksig); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("sign/"+kind.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := d.Sign(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
