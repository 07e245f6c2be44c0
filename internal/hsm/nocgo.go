//go:build !cgo

package hsm

import (
	"crypto"
	"fmt"
)

const supported = false

// token has no state without cgo: no token can be opened.
type token struct{}

// Open refuses: PKCS#11 modules need cgo.
func (k *Keys) Open(ref string) (crypto.Signer, error) {
	if _, err := ParseURI(ref); err != nil {
		return nil, err
	}
	return nil, ErrNoCgo
}

// Generate refuses: PKCS#11 modules need cgo.
func (k *Keys) Generate(ref string, bits int) (crypto.Signer, error) {
	if _, err := ParseURI(ref); err != nil {
		return nil, err
	}
	return nil, ErrNoCgo
}

// Close has nothing to close.
func (k *Keys) Close() error { return nil }

// Protection is what the token says about a private key.
type Protection struct {
	Sensitive, AlwaysSensitive    bool
	Extractable, NeverExtractable bool
	ExportRefused                 bool
}

// KeyProtection refuses: no key in a token can exist without cgo.
func KeyProtection(s crypto.Signer) (Protection, error) {
	return Protection{}, fmt.Errorf("hsm: %T is not a key in a token: %w", s, ErrNoCgo)
}
