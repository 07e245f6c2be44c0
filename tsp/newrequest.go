package tsp

import (
	"fmt"
	"math/big"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/tempel-ksi/tempel/ksi"
)

// NewRequest encodes a DER TimeStampReq (RFC 3161 §2.4.1, version 1) for
// the message imprint imp: its hash algorithm names the OID (with NULL
// parameters, as OpenSSL writes them), nonce is left out when nil, certReq
// asks for the TSA certificate in the token. No policy is named: the TSA's
// default applies.
func NewRequest(imp ksi.Imprint, nonce *big.Int, certReq bool) ([]byte, error) {
	if _, err := ksi.ParseImprint(imp); err != nil {
		return nil, fmt.Errorf("tsp: request: %w", err)
	}
	var oid []int
	for _, h := range hashOIDs {
		if h.alg == imp.Alg() {
			oid = h.oid
		}
	}
	if oid == nil {
		return nil, fmt.Errorf("tsp: request: %s has no RFC 3161 algorithm this TSA accepts", imp.Alg())
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(1)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			addAlgID(b, oid, true)
			b.AddASN1OctetString(imp.Digest())
		})
		if nonce != nil {
			b.AddASN1BigInt(nonce)
		}
		if certReq {
			b.AddASN1Boolean(true)
		}
	})
	return b.Bytes()
}
