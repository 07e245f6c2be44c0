package tsp

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"math/big"
	"testing"

	"github.com/tempel-ksi/tempel/ksi"
)

// NewRequest writes what ParseRequest reads back: imprint, nonce
// (negative ones too) and certReq.
func TestNewRequestRoundTrip(t *testing.T) {
	d256 := sha256.Sum256([]byte("doc"))
	d512 := sha512.Sum512([]byte("doc"))
	for _, tc := range []struct {
		alg     ksi.HashAlg
		digest  []byte
		nonce   *big.Int
		certReq bool
	}{
		{ksi.SHA2_256, d256[:], big.NewInt(0x1234567890), true},
		{ksi.SHA2_512, d512[:], nil, false},
		{ksi.SHA2_256, d256[:], big.NewInt(-5), false},
	} {
		imp, err := ksi.NewImprint(tc.alg, tc.digest)
		if err != nil {
			t.Fatal(err)
		}
		der, err := NewRequest(imp, tc.nonce, tc.certReq)
		if err != nil {
			t.Fatal(err)
		}
		q, err := ParseRequest(der)
		if err != nil {
			t.Fatalf("%s: %v", tc.alg, err)
		}
		if !q.Imprint.Equal(imp) || q.CertReq != tc.certReq || q.Policy != nil {
			t.Errorf("%s: parsed %+v", tc.alg, q)
		}
		var want []byte
		if tc.nonce != nil {
			want = nonceContent(tc.nonce)
		}
		if !bytes.Equal(q.Nonce, want) {
			t.Errorf("%s: nonce %x, want %x", tc.alg, q.Nonce, want)
		}
	}
	if _, err := NewRequest(ksi.Imprint{0x01, 1, 2}, nil, false); err == nil {
		t.Error("a malformed imprint was encoded")
	}
}

// nonceContent is the DER content of an INTEGER.
func nonceContent(n *big.Int) []byte {
	if n.Sign() < 0 {
		return []byte{0xfb} // -5, the only negative case above
	}
	b := n.Bytes()
	if b[0]&0x80 != 0 {
		b = append([]byte{0}, b...)
	}
	return b
}
