package tsp_test

import (
	"bytes"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/tsp"
)

func FuzzParseRequest(f *testing.F) {
	r := docRequest()
	f.Add(r.der())
	r.nonce, r.certReq = []byte{0xff, 0x80}, []byte{0x31}
	r.policy = tsp.DefaultPolicy
	f.Add(r.der())
	r.ext = true
	f.Add(r.der())
	tsa := newTSA(f, "ecdsa")
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := tsp.ParseRequest(data)
		if err != nil {
			var fl *tsp.Failure
			if !errors.As(err, &fl) {
				t.Fatalf("error %v is not a *Failure", err)
			}
			if _, err := tsp.ParseResponse(tsp.Rejection(fl)); !errors.As(err, &fl) {
				t.Fatalf("rejection does not read back: %v", err)
			}
			return
		}
		if len(req.Imprint) != 1+req.Imprint.Alg().Size() {
			t.Fatalf("imprint %x of a wrong length", req.Imprint)
		}
		if req.Policy != nil {
			return
		}
		// Any accepted request makes a token whose TSTInfo echoes it.
		d, err := tsa.signer.Draft(req, big.NewInt(1), time.Unix(1_767_225_600, 0))
		if err != nil {
			t.Fatalf("Draft of an accepted request: %v", err)
		}
		tok, err := tsp.ParseToken(draftToken(t, d))
		if err != nil {
			t.Fatalf("our own token does not parse: %v", err)
		}
		if !bytes.Equal(tok.Nonce, req.Nonce) || !bytes.Equal(tok.Digest, req.Imprint.Digest()) {
			t.Fatalf("token nonce %x digest %x, request %x %x", tok.Nonce, tok.Digest, req.Nonce, req.Imprint.Digest())
		}
	})
}

// draftToken completes d with a fake key signature (fuzzing checks the
// encoding, not the key) and a real KSI signature.
func draftToken(t testing.TB, d *tsp.Draft) []byte {
	tok, err := d.Token([]byte{1, 2, 3}, ksiSign(t, d.Document(), uint64(d.GenTime().Unix())))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func FuzzParseResponse(f *testing.F) {
	tsa := newTSA(f, "ecdsa")
	r := docRequest()
	r.certReq = []byte{1}
	r.nonce = []byte{1, 2, 3}
	resp, _ := issue(f, tsa.signer, r.der(), time.Unix(1_767_225_600, 0))
	f.Add(resp)
	f.Add(tsp.Rejection(&tsp.Failure{Info: tsp.BadAlg, Text: "no"}))
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := tsp.ParseResponse(data)
		if err != nil {
			var fl *tsp.Failure
			if !errors.As(err, &fl) && !errors.Is(err, tsp.ErrFormat) {
				t.Fatalf("error %v is neither a *Failure nor ErrFormat", err)
			}
			return
		}
		checkToken(t, tok)
	})
}

func FuzzParseToken(f *testing.F) {
	tsa := newTSA(f, "rsa")
	r := docRequest()
	r.certReq = []byte{1}
	resp, _ := issue(f, tsa.signer, r.der(), time.Unix(1_767_225_600, 0))
	tok, err := tsp.ParseResponse(resp)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tok.Raw)
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := tsp.ParseToken(data)
		if err != nil {
			if !errors.Is(err, tsp.ErrFormat) {
				t.Fatalf("error %v does not wrap ErrFormat", err)
			}
			return
		}
		checkToken(t, tok)
		if again, err := tsp.Parse(data); err != nil || again.IsResponse() {
			t.Fatalf("Parse of a token: %v", err)
		}
	})
}

// checkToken runs every check on a parsed token (they may fail, never
// panic) and, when its KSI signature is its own, re-embeds it: the
// result parses to the same signed content.
func checkToken(t *testing.T, tok *tsp.Token) {
	_ = tok.VerifyTSA(nil, nil, time.Time{})
	sig, err := tok.KSI()
	if err != nil {
		return
	}
	again, err := tok.WithKSI(sig.Raw)
	if err != nil {
		t.Fatalf("WithKSI of the token's own KSI signature: %v", err)
	}
	tok2, err := tsp.ParseToken(again)
	if err != nil {
		t.Fatalf("re-embedded token does not parse: %v", err)
	}
	if !bytes.Equal(tok2.TSTInfo, tok.TSTInfo) || !bytes.Equal(tok2.SignedAttrs, tok.SignedAttrs) || !bytes.Equal(tok2.KSISignature, tok.KSISignature) {
		t.Fatal("re-embedding changed the token's content")
	}
}
