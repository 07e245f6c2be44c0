package tsp_test

import (
	"bytes"
	"crypto/x509"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/tsp"
)

// TestPlainToken: a token without a KSI signature has the same content
// and TSA signature as the full one, verifies with the TSA certificate,
// and says it has no KSI signature; the response wraps the same token.
func TestPlainToken(t *testing.T) {
	for _, kind := range []string{"rsa", "ecdsa"} {
		t.Run(kind, func(t *testing.T) {
			tsa := newTSA(t, kind)
			r := docRequest()
			r.nonce = []byte{0xff, 0x01}
			r.certReq = []byte{1}
			req, err := tsp.ParseRequest(r.der())
			if err != nil {
				t.Fatal(err)
			}
			gen := time.Now()
			d, err := tsa.signer.Draft(req, big.NewInt(42), gen)
			if err != nil {
				t.Fatal(err)
			}
			sig, err := d.Sign()
			if err != nil {
				t.Fatal(err)
			}
			plain, err := d.PlainToken(sig)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := d.PlainResponse(sig)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(resp, tsp.Granted(plain)) {
				t.Fatal("PlainResponse differs from Granted(PlainToken)")
			}
			tok, err := tsp.ParseResponse(resp)
			if err != nil {
				t.Fatal(err)
			}
			if tok.KSISignature != nil {
				t.Fatal("a plain token carries a KSI signature")
			}
			if _, err := tok.KSI(); !errors.Is(err, tsp.ErrNoKSI) {
				t.Fatalf("KSI of a plain token: %v, want ErrNoKSI", err)
			}
			roots := x509.NewCertPool()
			roots.AddCert(tsa.root)
			if err := tok.VerifyTSA(roots, nil, time.Time{}); err != nil {
				t.Fatalf("VerifyTSA: %v", err)
			}
			if !tok.GenTime.Equal(gen.Truncate(time.Second)) || !bytes.Equal(tok.Nonce, r.nonce) || !bytes.Equal(tok.Digest, r.digest) || len(tok.Certificates) != 1 {
				t.Fatalf("token fields: genTime %v nonce %x digest %x certs %d", tok.GenTime, tok.Nonce, tok.Digest, len(tok.Certificates))
			}
			full, err := d.Token(sig, ksiSign(t, d.Document(), uint64(gen.Unix())))
			if err != nil {
				t.Fatal(err)
			}
			ftok, err := tsp.ParseToken(full)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ftok.TSTInfo, tok.TSTInfo) || !bytes.Equal(ftok.SignedAttrs, tok.SignedAttrs) || !bytes.Equal(ftok.Signature, tok.Signature) {
				t.Fatal("the plain and the full token differ in what the TSA signs")
			}
			// The KSI signature can be added later: the plain token then
			// becomes the full one byte for byte.
			with, err := tok.WithKSI(ftok.KSISignature)
			if err != nil {
				t.Fatalf("WithKSI on a plain token: %v", err)
			}
			if !bytes.Equal(with, full) {
				t.Fatal("WithKSI on the plain token differs from Token")
			}
		})
	}
}

// TestOpenSSLVerifiesPlain: openssl verifies a plain token as any TSA's.
func TestOpenSSLVerifiesPlain(t *testing.T) {
	openssl := needOpenSSL(t)
	for _, kind := range []string{"rsa", "ecdsa"} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			tsa := newTSA(t, kind)
			rootPEM := tsa.writeRoot(t, dir)
			doc, tsq, reqDER := opensslQuery(t, openssl, dir, "a document for the baseline\n", "-sha256", "-cert")
			req, err := tsp.ParseRequest(reqDER)
			if err != nil {
				t.Fatal(err)
			}
			d, err := tsa.signer.Draft(req, big.NewInt(7), time.Now())
			if err != nil {
				t.Fatal(err)
			}
			sig, err := d.Sign()
			if err != nil {
				t.Fatal(err)
			}
			resp, err := d.PlainResponse(sig)
			if err != nil {
				t.Fatal(err)
			}
			tsr := filepath.Join(dir, "resp.tsr")
			if err := os.WriteFile(tsr, resp, 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := run(t, openssl, "ts", "-verify", "-in", tsr, "-queryfile", tsq, "-CAfile", rootPEM); err != nil {
				t.Fatalf("openssl ts -verify: %v\n%s", err, out)
			}
			if err := os.WriteFile(doc, []byte("changed\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := run(t, openssl, "ts", "-verify", "-in", tsr, "-data", doc, "-CAfile", rootPEM); err == nil {
				t.Fatalf("openssl ts -verify accepted a changed document:\n%s", out)
			}
		})
	}
}
