//go:build cgo

package hsm

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

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
// private half cannot be read. When the token stops answering (removed,
// restarted, its sessions lost) a failed signature makes the key open
// the token again, at most once per [Config.ReopenEvery], and accept
// only the same key pair as before; until then signing fails and says
// why.
type Key struct {
	keys *Keys
	u    *URI
	uri  string
	pub  crypto.PublicKey

	mu         sync.Mutex
	signer     crypto11.Signer
	tok        *token
	lastReopen time.Time
}

// Public returns the public half, read from the token when opened.
func (k *Key) Public() crypto.PublicKey { return k.pub }

// Sign asks the token to sign digest. A failure is tried once more after
// opening the token again (see [Key]).
func (k *Key) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	signer, tok := k.current()
	sig, err := signWithin(signer, r, digest, opts, k.keys.cfg.SignTimeout)
	if err == nil {
		return sig, nil
	}
	if errors.Is(err, errSignTimeout) {
		// Opening the token again would wait on the hung call too.
		return nil, fmt.Errorf("hsm: sign with %s: the token did not answer within %s", k.uri, k.keys.cfg.SignTimeout)
	}
	failed := fmt.Errorf("hsm: sign with %s: %w", k.uri, redact(err, tok.pin))
	if rerr := k.reopen(tok); rerr != nil {
		return nil, fmt.Errorf("%w; the token is unavailable: %w", failed, rerr)
	}
	signer, tok = k.current()
	if sig, err = signWithin(signer, r, digest, opts, k.keys.cfg.SignTimeout); err != nil {
		return nil, fmt.Errorf("hsm: sign with %s after opening the token again: %w", k.uri, redact(err, tok.pin))
	}
	return sig, nil
}

var errSignTimeout = errors.New("hsm: no answer in time")

// signWithin asks s to sign, waiting at most d: a call into the module
// cannot be cancelled, and a token that hangs would otherwise hold the
// calendar's signing loop forever. An abandoned call keeps its session
// until it returns; the pool's bound ([Config.MaxSessions]) and wait
// ([Config.SessionWait]) bound how many can pile up.
func signWithin(s crypto.Signer, r io.Reader, digest []byte, opts crypto.SignerOpts, d time.Duration) ([]byte, error) {
	type result struct {
		sig []byte
		err error
	}
	digest = bytes.Clone(digest) // the caller may reuse its own after a timeout
	ch := make(chan result, 1)
	go func() {
		sig, err := s.Sign(r, digest, opts)
		ch <- result{sig, err}
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case res := <-ch:
		return res.sig, res.err
	case <-t.C:
		return nil, errSignTimeout
	}
}

func (k *Key) current() (crypto11.Signer, *token) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.signer, k.tok
}

// errReopenWait is returned while a token was opened again too recently.
var errReopenWait = errors.New("hsm: the token was opened again moments ago; waiting before the next try")

// reopen closes stale, the session pool a signature failed on, opens the
// token anew and finds the key again. A key that is not the same pair
// (another object under the URI now) is refused: the key never signs
// with anything but what it was opened with.
func (k *Key) reopen(stale *token) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.tok != stale {
		return nil // another caller reopened it meanwhile
	}
	if time.Since(k.lastReopen) < k.keys.cfg.ReopenEvery {
		return errReopenWait
	}
	k.lastReopen = time.Now()
	k.keys.drop(stale)
	tok, err := k.keys.token(k.u)
	if err != nil {
		return err
	}
	pair, err := tok.findPair(k.u)
	if err == nil && !publicEqual(pair.Public(), k.pub) {
		err = fmt.Errorf("hsm: %s now names another key than the one opened at start; refusing to sign with it", k.uri)
	}
	if err != nil {
		// The next try logs in afresh rather than reuse a view of the
		// token that may be stale too.
		k.keys.drop(tok)
		return err
	}
	k.signer, k.tok = pair, tok
	return nil
}

func publicEqual(a, b crypto.PublicKey) bool {
	ka, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ka.Equal(b)
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
	pair, err := tok.findPair(u)
	if err != nil {
		return nil, err
	}
	return &Key{keys: k, u: u, uri: u.String(), pub: pair.Public(), signer: pair, tok: tok}, nil
}

// findPair finds the one key pair u names in the token.
func (t *token) findPair(u *URI) (crypto11.Signer, error) {
	pairs, err := t.ctx.FindKeyPairs(u.ID, []byte(u.Object))
	if err != nil {
		return nil, fmt.Errorf("hsm: find %s: %w", u, redact(err, t.pin))
	}
	switch len(pairs) {
	case 0:
		return nil, fmt.Errorf("hsm: no key %s in token %s (no private key with that label or id, or its public key is missing)", u, t.name)
	case 1:
	default:
		return nil, fmt.Errorf("hsm: %d keys match %s in token %s; add id=... to choose one", len(pairs), u, t.name)
	}
	return pairs[0], nil
}

// drop closes t and forgets it, if it is still the open pool of its
// token, so that the next key opened there logs in afresh.
func (k *Keys) drop(t *token) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for key, v := range k.tokens {
		if v == t {
			_ = t.ctx.Close() // its sessions are lost already
			delete(k.tokens, key)
		}
	}
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
	return &Key{keys: k, u: u, uri: u.String(), pub: s.Public(), signer: s, tok: tok}, nil
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
	signer, tok := k.current()
	attrs, err := tok.ctx.GetAttributes(signer, []crypto11.AttributeType{
		crypto11.CkaSensitive, crypto11.CkaAlwaysSensitive, crypto11.CkaExtractable, crypto11.CkaNeverExtractable})
	if err != nil {
		return Protection{}, fmt.Errorf("hsm: attributes of %s: %w", k.uri, redact(err, tok.pin))
	}
	flag := func(t crypto11.AttributeType) bool {
		a := attrs[t]
		return a != nil && len(a.Value) == 1 && a.Value[0] != 0
	}
	p := Protection{Sensitive: flag(crypto11.CkaSensitive), AlwaysSensitive: flag(crypto11.CkaAlwaysSensitive),
		Extractable: flag(crypto11.CkaExtractable), NeverExtractable: flag(crypto11.CkaNeverExtractable)}
	exp, err := tok.ctx.GetAttributes(signer, []crypto11.AttributeType{crypto11.CkaPrivateExponent})
	p.ExportRefused = err != nil || exp[crypto11.CkaPrivateExponent] == nil || len(exp[crypto11.CkaPrivateExponent].Value) == 0
	return p, nil
}
