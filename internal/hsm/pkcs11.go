//go:build cgo

package hsm

import (
	"crypto"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ThalesGroup/crypto11"
)

const supported = true

// token is one logged-in session pool on a token.
type token struct {
	ctx  *crypto11.Context
	pin  string
	name string // label or serial, for messages
}

// Key is a private key in a token. It signs through the token; its
// private half cannot be read.
type Key struct {
	signer crypto11.Signer
	tok    *token
	uri    string
}

// Public returns the public half, read from the token when opened.
func (k *Key) Public() crypto.PublicKey { return k.signer.Public() }

// Sign asks the token to sign digest.
func (k *Key) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	sig, err := k.signer.Sign(r, digest, opts)
	if err != nil {
		return nil, fmt.Errorf("hsm: sign with %s: %w", k.uri, redact(err, k.tok.pin))
	}
	return sig, nil
}

// String is the key's URI without any PIN.
func (k *Key) String() string { return k.uri }

// Open returns the private key named by the pkcs11: URI ref. Exactly one
// key pair must match, with its public half in the token.
func (k *Keys) Open(ref string) (crypto.Signer, error) {
	u, err := ParseURI(ref)
	if err != nil {
		return nil, err
	}
	tok, err := k.token(u)
	if err != nil {
		return nil, err
	}
	pairs, err := tok.ctx.FindKeyPairs(u.ID, []byte(u.Object))
	if err != nil {
		return nil, fmt.Errorf("hsm: find %s: %w", u, redact(err, tok.pin))
	}
	switch len(pairs) {
	case 0:
		return nil, fmt.Errorf("hsm: no key %s in token %s (no private key with that label or id, or its public key is missing)", u, tok.name)
	case 1:
	default:
		return nil, fmt.Errorf("hsm: %d keys match %s in token %s; add id=... to choose one", len(pairs), u, tok.name)
	}
	return &Key{signer: pairs[0], tok: tok, uri: u.String()}, nil
}

// token returns the session pool of u's token, opening it (and logging
// in) the first time.
func (k *Keys) token(u *URI) (*token, error) {
	module, pin, err := k.resolve(u)
	if err != nil {
		return nil, err
	}
	key := tokenKey{module: module, label: u.Token, serial: u.Serial}
	k.mu.Lock()
	defer k.mu.Unlock()
	if t, ok := k.tokens[key]; ok {
		// PKCS#11 logs in per process, so a second login would not check
		// the PIN: refuse a different PIN rather than skip the check.
		if t.pin != pin {
			return nil, fmt.Errorf("hsm: %s: token %s is already open with another PIN; give one PIN per token", u, t.name)
		}
		return t, nil
	}
	name := fmt.Sprintf("%q", u.Token)
	if u.Serial != "" {
		name = "with serial " + u.Serial
	}
	ctx, err := crypto11.Configure(&crypto11.Config{
		Path: module, TokenLabel: u.Token, TokenSerial: u.Serial, Pin: pin,
		MaxSessions: k.cfg.MaxSessions, PoolWaitTimeout: k.cfg.SessionWait,
	})
	if err != nil {
		return nil, openError(err, pin, module, name)
	}
	t := &token{ctx: ctx, pin: pin, name: name}
	k.tokens[key] = t
	return t, nil
}

// openError says in words what went wrong opening a token.
func openError(err error, pin, module, name string) error {
	err = redact(err, pin)
	msg := err.Error()
	switch {
	case strings.Contains(msg, "CKR_PIN_INCORRECT"):
		return fmt.Errorf("hsm: log in to token %s: wrong PIN (CKR_PIN_INCORRECT)", name)
	case strings.Contains(msg, "CKR_PIN_LOCKED"):
		return fmt.Errorf("hsm: log in to token %s: the PIN is locked (CKR_PIN_LOCKED); the security officer must unlock it", name)
	case strings.Contains(msg, "could not find PKCS#11 token"):
		return fmt.Errorf("hsm: no token %s in module %s", name, module)
	case strings.Contains(msg, "failed to create module context"):
		return fmt.Errorf("hsm: load PKCS#11 module %s: %w", module, err)
	}
	return fmt.Errorf("hsm: open token %s in module %s: %w", name, module, err)
}

// Close logs out and closes every token opened.
func (k *Keys) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	var errs []error
	for key, t := range k.tokens {
		if err := t.ctx.Close(); err != nil {
			errs = append(errs, fmt.Errorf("hsm: close token %s: %w", t.name, redact(err, t.pin)))
		}
		delete(k.tokens, key)
	}
	return errors.Join(errs...)
}

// Generate makes an RSA key pair of bits in the token named by the
// pkcs11: URI ref (its object label is the new key's label; a random
// CKA_ID is given). The private key is sensitive and not extractable and
// may only sign. It refuses when a key with that label exists.
func (k *Keys) Generate(ref string, bits int) (crypto.Signer, error) {
	u, err := ParseURI(ref)
	if err != nil {
		return nil, err
	}
	if u.Object == "" || len(u.ID) > 0 {
		return nil, fmt.Errorf("hsm: generate %s: name the new key by object=LABEL only", u)
	}
	tok, err := k.token(u)
	if err != nil {
		return nil, err
	}
	if old, err := tok.ctx.FindKeyPairs(nil, []byte(u.Object)); err != nil {
		return nil, fmt.Errorf("hsm: generate %s: %w", u, redact(err, tok.pin))
	} else if len(old) > 0 {
		return nil, fmt.Errorf("hsm: generate %s: token %s already holds a key labelled %q; refusing to add another (delete it or choose another label)", u, tok.name, u.Object)
	}
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return nil, fmt.Errorf("hsm: generate: %w", err)
	}
	pub, err := crypto11.NewAttributeSetWithIDAndLabel(id, []byte(u.Object))
	if err != nil {
		return nil, fmt.Errorf("hsm: generate %s: %w", u, err)
	}
	priv := pub.Copy()
	for _, a := range []struct {
		set   crypto11.AttributeSet
		typ   crypto11.AttributeType
		value bool
	}{
		{pub, crypto11.CkaVerify, true}, {pub, crypto11.CkaEncrypt, false}, {pub, crypto11.CkaWrap, false},
		{priv, crypto11.CkaSign, true}, {priv, crypto11.CkaDecrypt, false}, {priv, crypto11.CkaUnwrap, false},
		{priv, crypto11.CkaSensitive, true}, {priv, crypto11.CkaExtractable, false},
		{priv, crypto11.CkaPrivate, true},
	} {
		if err := a.set.Set(a.typ, a.value); err != nil {
			return nil, fmt.Errorf("hsm: generate %s: %w", u, err)
		}
	}
	s, err := tok.ctx.GenerateRSAKeyPairWithAttributes(pub, priv, bits)
	if err != nil {
		return nil, fmt.Errorf("hsm: generate RSA-%d key %s in token %s: %w", bits, u, tok.name, redact(err, tok.pin))
	}
	return &Key{signer: s, tok: tok, uri: u.String()}, nil
}

// Protection is what the token says about a private key.
type Protection struct {
	Sensitive, AlwaysSensitive    bool // CKA_SENSITIVE, CKA_ALWAYS_SENSITIVE
	Extractable, NeverExtractable bool // CKA_EXTRACTABLE, CKA_NEVER_EXTRACTABLE
	// ExportRefused is true when the token refused to give the private
	// exponent (CKA_PRIVATE_EXPONENT) when asked for it.
	ExportRefused bool
}

// KeyProtection reads the protection attributes of a key from [Keys.Open]
// or [Keys.Generate], and asks for its private exponent to show that the
// token refuses to give it.
func KeyProtection(s crypto.Signer) (Protection, error) {
	k, ok := s.(*Key)
	if !ok {
		return Protection{}, fmt.Errorf("hsm: %T is not a key in a token", s)
	}
	attrs, err := k.tok.ctx.GetAttributes(k.signer, []crypto11.AttributeType{
		crypto11.CkaSensitive, crypto11.CkaAlwaysSensitive, crypto11.CkaExtractable, crypto11.CkaNeverExtractable})
	if err != nil {
		return Protection{}, fmt.Errorf("hsm: attributes of %s: %w", k.uri, redact(err, k.tok.pin))
	}
	flag := func(t crypto11.AttributeType) bool {
		a := attrs[t]
		return a != nil && len(a.Value) == 1 && a.Value[0] != 0
	}
	p := Protection{Sensitive: flag(crypto11.CkaSensitive), AlwaysSensitive: flag(crypto11.CkaAlwaysSensitive),
		Extractable: flag(crypto11.CkaExtractable), NeverExtractable: flag(crypto11.CkaNeverExtractable)}
	exp, err := k.tok.ctx.GetAttributes(k.signer, []crypto11.AttributeType{crypto11.CkaPrivateExponent})
	p.ExportRefused = err != nil || exp[crypto11.CkaPrivateExponent] == nil || len(exp[crypto11.CkaPrivateExponent].Value) == 0
	return p, nil
}
