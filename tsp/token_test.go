package tsp_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/tsp"
	"github.com/tempel-ksi/tempel/verifier"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// request encodes a TimeStampReq by hand, so tests control every byte.
type request struct {
	version int64
	hashOID asn1.ObjectIdentifier
	digest  []byte
	policy  asn1.ObjectIdentifier
	nonce   []byte // INTEGER content
	certReq []byte // BOOLEAN content, nil for absent
	ext     bool
}

func (r request) der() []byte {
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(r.version)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(r.hashOID) })
			b.AddASN1OctetString(r.digest)
		})
		if r.policy != nil {
			b.AddASN1ObjectIdentifier(r.policy)
		}
		if r.nonce != nil {
			b.AddASN1(cbasn1.INTEGER, func(b *cryptobyte.Builder) { b.AddBytes(r.nonce) })
		}
		if r.certReq != nil {
			b.AddASN1(cbasn1.BOOLEAN, func(b *cryptobyte.Builder) { b.AddBytes(r.certReq) })
		}
		if r.ext {
			b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(asn1.ObjectIdentifier{1, 2, 3}) })
			})
		}
	})
	return b.BytesOrPanic()
}

var (
	oidSHA256 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidSHA1   = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	docData   = []byte("the document\n")
)

func docRequest() request {
	h := sha256.Sum256(docData)
	return request{version: 1, hashOID: oidSHA256, digest: h[:]}
}

func TestParseRequestLenient(t *testing.T) {
	r := docRequest()
	r.nonce = []byte{0xff, 0x01, 0x02} // negative, as pkijs may send
	r.certReq = []byte{0x31}           // zgapdfsigner's BER TRUE
	req, err := tsp.ParseRequest(r.der())
	if err != nil {
		t.Fatal(err)
	}
	if !req.CertReq || !bytes.Equal(req.Nonce, r.nonce) || req.Imprint.Alg() != ksi.SHA2_256 || !bytes.Equal(req.Imprint.Digest(), r.digest) {
		t.Fatalf("parsed %+v", req)
	}
	r.certReq = []byte{0}
	if req, err = tsp.ParseRequest(r.der()); err != nil || req.CertReq {
		t.Fatalf("certReq FALSE: %v, %+v", err, req)
	}
}

func TestParseRequestFailures(t *testing.T) {
	long := docRequest()
	long.digest = append(long.digest, 0)
	sha1 := docRequest()
	sha1.hashOID, sha1.digest = oidSHA1, make([]byte, 20)
	unknown := docRequest()
	unknown.hashOID = asn1.ObjectIdentifier{1, 2, 3, 4}
	v2 := docRequest()
	v2.version = 2
	ext := docRequest()
	ext.ext = true
	for _, tt := range []struct {
		name string
		der  []byte
		want tsp.FailureInfo
	}{
		{"digest length", long.der(), tsp.BadDataFormat},
		{"SHA-1", sha1.der(), tsp.BadAlg},
		{"unknown hash", unknown.der(), tsp.BadAlg},
		{"version 2", v2.der(), tsp.BadRequest},
		{"extensions", ext.der(), tsp.UnacceptedExtension},
		{"garbage", []byte("POST / HTTP/1.1"), tsp.BadDataFormat},
		{"empty", nil, tsp.BadDataFormat},
		{"trailing", append(docRequest().der(), 0), tsp.BadDataFormat},
		{"too large", make([]byte, tsp.MaxRequestSize+1), tsp.BadDataFormat},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tsp.ParseRequest(tt.der)
			var f *tsp.Failure
			if !errors.As(err, &f) || f.Info != tt.want {
				t.Fatalf("error %v, want %s", err, tt.want)
			}
			// The rejection carries the same failure back.
			_, err = tsp.ParseResponse(tsp.Rejection(f))
			var back *tsp.Failure
			if !errors.As(err, &back) || back.Info != tt.want || !bytes.Contains([]byte(back.Text), []byte(f.Text)) {
				t.Fatalf("rejection read back as %v", err)
			}
		})
	}
}

func TestRejectionOutOfRange(t *testing.T) {
	for _, info := range []tsp.FailureInfo{-1, 26, 1 << 30} {
		_, err := tsp.ParseResponse(tsp.Rejection(&tsp.Failure{Info: info, Text: "x"}))
		var f *tsp.Failure
		if !errors.As(err, &f) || f.Info != tsp.SystemFailure {
			t.Errorf("failure info %d read back as %v", info, err)
		}
	}
}

func TestPolicy(t *testing.T) {
	tsa := newTSA(t, "ecdsa")
	other := asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1}
	tsa.signer.Policies = []asn1.ObjectIdentifier{other}
	for _, tt := range []struct {
		req, want asn1.ObjectIdentifier
	}{{nil, tsp.DefaultPolicy}, {tsp.DefaultPolicy, tsp.DefaultPolicy}, {other, other}} {
		r := docRequest()
		r.policy = tt.req
		resp, _ := issue(t, tsa.signer, r.der(), time.Now())
		tok, err := tsp.ParseResponse(resp)
		if err != nil {
			t.Fatal(err)
		}
		if !tok.Policy.Equal(tt.want) {
			t.Fatalf("requested %v, got %v, want %v", tt.req, tok.Policy, tt.want)
		}
	}
	r := docRequest()
	r.policy = asn1.ObjectIdentifier{1, 2, 3}
	req, err := tsp.ParseRequest(r.der())
	if err != nil {
		t.Fatal(err)
	}
	_, err = tsa.signer.Draft(req, big.NewInt(1), time.Now())
	var f *tsp.Failure
	if !errors.As(err, &f) || f.Info != tsp.UnacceptedPolicy {
		t.Fatalf("unserved policy: %v", err)
	}
}

// TestTokenBothLayers: a token's fields are what was asked, its TSA layer
// verifies, and its KSI signature verifies with the message imprint as
// the document hash; both fail when they should.
func TestTokenBothLayers(t *testing.T) {
	for _, kind := range []string{"rsa", "ecdsa"} {
		t.Run(kind, func(t *testing.T) {
			tsa := newTSA(t, kind)
			r := docRequest()
			r.nonce = []byte{0x80, 0, 0, 0, 0, 0, 0, 1}
			r.certReq = []byte{0xff}
			gen := time.Now().Truncate(time.Second)
			resp, d := issue(t, tsa.signer, r.der(), gen)
			tok, err := tsp.ParseResponse(resp)
			if err != nil {
				t.Fatal(err)
			}
			if !tok.GenTime.Equal(gen) || tok.Accuracy != time.Second || !bytes.Equal(tok.Nonce, r.nonce) || !bytes.Equal(tok.Digest, r.digest) || len(tok.Certificates) != 1 {
				t.Fatalf("token fields: genTime %v accuracy %v nonce %x digest %x certs %d", tok.GenTime, tok.Accuracy, tok.Nonce, tok.Digest, len(tok.Certificates))
			}
			roots := x509.NewCertPool()
			roots.AddCert(tsa.root)
			if err := tok.VerifyTSA(roots, nil, time.Time{}); err != nil {
				t.Fatalf("VerifyTSA: %v", err)
			}
			if err := tok.VerifyTSA(x509.NewCertPool(), nil, time.Time{}); err == nil {
				t.Fatal("VerifyTSA passed without the root")
			}
			sig, err := tok.KSI()
			if err != nil {
				t.Fatalf("KSI: %v", err)
			}
			doc, _ := ksi.SHA2_256.Digest(docData)
			rep := verifier.Verify(context.Background(), sig, verifier.Internal, verifier.Options{Document: doc})
			if rep.Result != verifier.OK {
				t.Fatalf("internal verification: %v %+v", rep.Result, rep.Rules)
			}
			wrong, _ := ksi.SHA2_256.Digest([]byte("another document"))
			if rep := verifier.Verify(context.Background(), sig, verifier.Internal, verifier.Options{Document: wrong}); rep.Result == verifier.OK {
				t.Fatal("internal verification passed for another document")
			}
			// The signature of another token (same document, same second) is not this token's.
			resp2, _ := issue(t, tsa.signer, r.der(), gen)
			tok2, err := tsp.ParseResponse(resp2)
			if err != nil {
				t.Fatal(err)
			}
			sig2, err := tok2.KSI()
			if err != nil {
				t.Fatal(err)
			}
			if err := tok.CheckKSI(sig2); err == nil {
				t.Fatal("CheckKSI accepted another token's KSI signature")
			}
			if _, err := tok.WithKSI(sig2.Raw); err == nil {
				t.Fatal("WithKSI accepted another token's KSI signature")
			}
			// A KSI signature of Document() at another second is refused.
			if _, err := d.Token(nil, ksiSign(t, d.Document(), uint64(gen.Unix())+1)); err == nil {
				t.Fatal("Token accepted a KSI signature of another second")
			}
			if _, err := d.Token(nil, ksiSign(t, wrong, uint64(gen.Unix()))); err == nil {
				t.Fatal("Token accepted a KSI signature of another document")
			}
			refKSI(t, sig, docData)
		})
	}
}

// refKSI runs the reference ksi-tool's internal verification on sig with
// the document, when the tool is installed.
func refKSI(t *testing.T, sig *ksi.Signature, doc []byte, extra ...string) {
	t.Helper()
	const tool = "/work/ref/inst/bin/ksi"
	if testing.Short() {
		return // -short: no ksi-tool processes
	}
	if _, err := os.Stat(tool); err != nil {
		t.Log("reference ksi-tool not installed; skipping its verification")
		return
	}
	dir := t.TempDir()
	sigPath, docPath := filepath.Join(dir, "t.ksig"), filepath.Join(dir, "doc")
	if err := os.WriteFile(sigPath, sig.Raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(docPath, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"verify", "-i", sigPath, "-f", docPath}
	if len(extra) == 0 {
		extra = []string{"--ver-int"}
	}
	if out, err := exec.Command(tool, append(args, extra...)...).CombinedOutput(); err != nil {
		t.Fatalf("ksi verify %v: %v\n%s", extra, err, out)
	}
	if err := os.WriteFile(docPath, []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(tool, append(args, extra...)...).CombinedOutput(); err == nil {
		t.Fatalf("ksi verify accepted a changed document:\n%s", out)
	}
}

// TestWithKSIExtended: the token's KSI signature extended to a
// publication replaces the old one; everything signed is byte-identical,
// the TSA signature still verifies (here and in openssl), and the new
// KSI signature verifies with only the publication.
func TestWithKSIExtended(t *testing.T) {
	tsa := newTSA(t, "rsa")
	r := docRequest()
	r.certReq = []byte{1}
	resp, _ := issue(t, tsa.signer, r.der(), time.Now())
	tok, err := tsp.ParseResponse(resp)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := tok.KSI()
	if err != nil {
		t.Fatal(err)
	}
	ext, pd := extendSig(t, sig, 5)
	newResp, err := tok.WithKSIResponse(ext.Raw)
	if err != nil {
		t.Fatal(err)
	}
	tok2, err := tsp.ParseResponse(newResp)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(tok2.KSISignature, ext.Raw) || !bytes.Equal(tok2.TSTInfo, tok.TSTInfo) || !bytes.Equal(tok2.SignedAttrs, tok.SignedAttrs) || !bytes.Equal(tok2.Signature, tok.Signature) {
		t.Fatal("WithKSI changed more than the KSI signature")
	}
	if bytes.Equal(newResp, resp) {
		t.Fatal("WithKSI did not change the token")
	}
	// The bare token: Parse tells it from a response; WithKSI gives a token.
	bare, err := tsp.Parse(tok2.Raw)
	if err != nil || bare.IsResponse() || !tok2.IsResponse() {
		t.Fatalf("Parse of the bare token: %v, response %v/%v", err, bare != nil && bare.IsResponse(), tok2.IsResponse())
	}
	if again, err := tsp.Parse(newResp); err != nil || !again.IsResponse() || !bytes.Equal(again.Raw, tok2.Raw) {
		t.Fatalf("Parse of the response: %v", err)
	}
	if b, err := bare.WithKSI(ext.Raw); err != nil || !bytes.Equal(b, bare.Raw) {
		t.Fatalf("WithKSI of the same signature on the bare token: %v, unchanged %v", err, bytes.Equal(b, bare.Raw))
	}
	roots := x509.NewCertPool()
	roots.AddCert(tsa.root)
	if err := tok2.VerifyTSA(roots, nil, time.Time{}); err != nil {
		t.Fatalf("VerifyTSA after WithKSI: %v", err)
	}
	sig2, err := tok2.KSI()
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := ksi.SHA2_256.Digest(docData)
	rep := verifier.Verify(context.Background(), sig2, verifier.UserPublicationBased, verifier.Options{Document: doc, UserPublication: &pd})
	if rep.Result != verifier.OK {
		t.Fatalf("publication-based verification: %v %+v", rep.Result, rep.Rules)
	}
	refKSI(t, sig2, docData, "--ver-pub", "--pub-str", ksi.PublicationString(pd.Time, pd.Hash))

	if openssl, err := exec.LookPath("openssl"); err == nil && !testing.Short() {
		dir := t.TempDir()
		rootPEM := tsa.writeRoot(t, dir)
		tsr, doc := filepath.Join(dir, "r.tsr"), filepath.Join(dir, "doc")
		if err := os.WriteFile(tsr, newResp, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(doc, docData, 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(openssl, "ts", "-verify", "-in", tsr, "-data", doc, "-CAfile", rootPEM).CombinedOutput(); err != nil {
			t.Fatalf("openssl ts -verify after WithKSI: %v\n%s", err, out)
		}
	}
}
