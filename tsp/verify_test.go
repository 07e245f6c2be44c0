package tsp_test

import (
	"bytes"
	"crypto/x509"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/tsp"
)

// A token without certificates (certReq not set) verifies only with the
// signer's certificate given; a changed TSTInfo or signature fails.
func TestVerifyTSAFailures(t *testing.T) {
	tsa := newTSA(t, "ecdsa")
	resp, _ := issue(t, tsa.signer, docRequest().der(), time.Now())
	tok, err := tsp.ParseResponse(resp)
	if err != nil {
		t.Fatal(err)
	}
	if len(tok.Certificates) != 0 {
		t.Fatalf("%d certificates without certReq", len(tok.Certificates))
	}
	roots := x509.NewCertPool()
	roots.AddCert(tsa.root)
	if err := tok.VerifyTSA(roots, nil, time.Time{}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("VerifyTSA without the signer's certificate: %v", err)
	}
	if err := tok.VerifyTSA(roots, nil, time.Time{}, tsa.signer.Cert); err != nil {
		t.Fatalf("VerifyTSA with the signer's certificate given: %v", err)
	}
	if err := tok.VerifyTSA(roots, nil, time.Now().Add(48*time.Hour), tsa.signer.Cert); err == nil {
		t.Fatal("VerifyTSA passed after the certificate expired")
	}
	other := newTSA(t, "rsa")
	if err := tok.VerifyTSA(roots, nil, time.Time{}, other.signer.Cert); err == nil {
		t.Fatal("VerifyTSA passed with another certificate")
	}

	// Flip one byte of the serial number in the TSTInfo: the messageDigest no longer matches.
	i := bytes.Index(resp, tok.TSTInfo) + len(tok.TSTInfo) - 25
	bad := bytes.Clone(resp)
	bad[i] ^= 1
	tok2, err := tsp.ParseResponse(bad)
	if err != nil {
		t.Fatal(err)
	}
	if err := tok2.VerifyTSA(roots, nil, time.Time{}, tsa.signer.Cert); err == nil {
		t.Fatal("VerifyTSA passed a changed TSTInfo")
	}
	if _, err := tok2.KSI(); err == nil {
		t.Fatal("KSI passed a changed TSTInfo")
	}
	// Flip the last byte of the signature.
	bad = bytes.Clone(resp)
	j := bytes.Index(resp, tok.Signature) + len(tok.Signature) - 1
	bad[j] ^= 1
	if tok2, err = tsp.ParseResponse(bad); err != nil {
		t.Fatal(err)
	}
	if err := tok2.VerifyTSA(roots, nil, time.Time{}, tsa.signer.Cert); err == nil {
		t.Fatal("VerifyTSA passed a changed signature")
	}
}

// A TSA certificate without a critical timeStamping EKU cannot sign.
func TestSignerChecksCertificate(t *testing.T) {
	good := newTSA(t, "rsa")
	other := newTSA(t, "ecdsa")
	req, err := tsp.ParseRequest(docRequest().der())
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]*tsp.Signer{
		"no EKU":         {Key: testKey(t, "root"), Cert: good.root},
		"key mismatch":   {Key: other.signer.Key, Cert: good.signer.Cert},
		"no certificate": {Key: good.signer.Key},
	} {
		if _, err := s.Draft(req, big.NewInt(1), time.Now()); err == nil {
			t.Errorf("%s: Draft succeeded", name)
		}
	}
	if _, err := good.signer.Draft(req, big.NewInt(0), time.Now()); err == nil {
		t.Error("serial 0 accepted")
	}
}

// One Signer drafts and signs from many goroutines (run with -race).
func TestSignerConcurrent(t *testing.T) {
	tsa := newTSA(t, "ecdsa")
	s := &tsp.Signer{Key: tsa.signer.Key, Cert: tsa.signer.Cert}
	req, err := tsp.ParseRequest(docRequest().der())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := s.Draft(req, big.NewInt(int64(i+1)), time.Now())
			if err == nil {
				_, err = d.Sign()
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
