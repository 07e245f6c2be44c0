package tsp_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/internal/pki"
	"github.com/tempel-ksi/tempel/tsp"
)

func needOpenSSL(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: no openssl processes")
	}
	p, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("openssl is not installed in CI (.ci/run installs it)")
		}
		t.Skip("openssl not installed: the interoperability tests need it")
	}
	return p
}

// opensslQuery writes content to dir/doc.txt and has openssl ask for a
// time-stamp of it with the query flags q; it returns the document's
// path, the request's path and its DER.
func opensslQuery(t *testing.T, openssl, dir, content string, q ...string) (doc, tsq string, der []byte) {
	t.Helper()
	doc = filepath.Join(dir, "doc.txt")
	if err := os.WriteFile(doc, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	tsq = filepath.Join(dir, "req.tsq")
	if out, err := run(t, openssl, append([]string{"ts", "-query", "-data", doc, "-out", tsq}, q...)...); err != nil {
		t.Fatalf("openssl ts -query: %v\n%s", err, out)
	}
	der, err := os.ReadFile(tsq)
	if err != nil {
		t.Fatal(err)
	}
	return doc, tsq, der
}

func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

// TestOpenSSLVerifies: openssl makes the request, we answer, openssl
// verifies the token against the document and against the request; a
// changed document fails.
func TestOpenSSLVerifies(t *testing.T) {
	openssl := needOpenSSL(t)
	for _, kind := range []string{"rsa", "ecdsa"} {
		for _, q := range [][]string{{"-sha256", "-cert"}, {"-sha512", "-no_nonce"}, {"-sha384", "-cert", "-no_nonce"}} {
			t.Run(kind+strings.Join(q, ""), func(t *testing.T) {
				dir := t.TempDir()
				tsa := newTSA(t, kind)
				rootPEM := tsa.writeRoot(t, dir)
				doc, tsq, reqDER := opensslQuery(t, openssl, dir, "a document to time-stamp\n", q...)
				resp, _ := issue(t, tsa.signer, reqDER, time.Now())
				tsr := filepath.Join(dir, "resp.tsr")
				if err := os.WriteFile(tsr, resp, 0o644); err != nil {
					t.Fatal(err)
				}
				untrusted := []string{}
				if !strings.Contains(strings.Join(q, " "), "-cert") {
					p := filepath.Join(dir, "tsa.pem")
					writePEM(t, p, tsa.signer.Cert.Raw)
					untrusted = []string{"-untrusted", p}
				}
				verify := func(extra ...string) (string, error) {
					args := append([]string{"ts", "-verify", "-in", tsr, "-CAfile", rootPEM}, extra...)
					return run(t, openssl, append(args, untrusted...)...)
				}
				if out, err := verify("-data", doc); err != nil {
					t.Fatalf("openssl ts -verify -data: %v\n%s", err, out)
				}
				if out, err := verify("-queryfile", tsq); err != nil {
					t.Fatalf("openssl ts -verify -queryfile: %v\n%s", err, out)
				}
				other := filepath.Join(dir, "other.txt")
				if err := os.WriteFile(other, []byte("a changed document\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				if out, err := verify("-data", other); err == nil {
					t.Fatalf("openssl ts -verify accepted a changed document:\n%s", out)
				}
			})
		}
	}
}

// TestOpenSSLDevPKI: tokens signed with the development PKI's TSA key
// (tempel keys init, RSA and ECDSA) verify with openssl against root.pem.
func TestOpenSSLDevPKI(t *testing.T) {
	openssl := needOpenSSL(t)
	for _, kind := range []pki.TSAKeyType{pki.TSAKeyRSA, pki.TSAKeyECDSA} {
		t.Run(string(kind), func(t *testing.T) {
			dir := t.TempDir()
			set, err := pki.Init(filepath.Join(dir, "keys"), pki.InitOptions{TSAKey: kind})
			if err != nil {
				t.Fatal(err)
			}
			signer, err := set.TSASigner()
			if err != nil {
				t.Fatal(err)
			}
			doc := filepath.Join(dir, "doc.txt")
			if err := os.WriteFile(doc, []byte("signed by the development TSA\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			tsq := filepath.Join(dir, "req.tsq")
			if out, err := run(t, openssl, "ts", "-query", "-data", doc, "-sha256", "-cert", "-out", tsq); err != nil {
				t.Fatalf("openssl ts -query: %v\n%s", err, out)
			}
			reqDER, err := os.ReadFile(tsq)
			if err != nil {
				t.Fatal(err)
			}
			resp, _ := issue(t, signer, reqDER, time.Now())
			tsr := filepath.Join(dir, "resp.tsr")
			if err := os.WriteFile(tsr, resp, 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := run(t, openssl, "ts", "-verify", "-in", tsr, "-queryfile", tsq, "-CAfile", set.RootPath); err != nil {
				t.Fatalf("openssl ts -verify: %v\n%s", err, out)
			}
			if err := os.WriteFile(doc, []byte("changed\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := run(t, openssl, "ts", "-verify", "-in", tsr, "-data", doc, "-CAfile", set.RootPath); err == nil {
				t.Fatalf("openssl ts -verify accepted a changed document:\n%s", out)
			}
		})
	}
}

// TestOpenSSLReadsRejection: openssl reads our rejections with their
// status text and failure info.
func TestOpenSSLReadsRejection(t *testing.T) {
	openssl := needOpenSSL(t)
	dir := t.TempDir()
	for _, tt := range []struct {
		f    *tsp.Failure
		want string
	}{
		{&tsp.Failure{Info: tsp.BadAlg, Text: "SHA-1 is deprecated"}, "unrecognized or unsupported algorithm"},
		{&tsp.Failure{Info: tsp.UnacceptedPolicy, Text: "policy 1.2.3 is not served"}, "TSA policy is not supported"},
		{&tsp.Failure{Info: tsp.BadDataFormat, Text: "not a DER TimeStampReq"}, "has the wrong format"},
	} {
		p := filepath.Join(dir, "rej.tsr")
		if err := os.WriteFile(p, tsp.Rejection(tt.f), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := run(t, openssl, "ts", "-reply", "-in", p, "-text")
		if err != nil {
			t.Fatalf("openssl ts -reply: %v\n%s", err, out)
		}
		for _, w := range []string{"Status: Rejected", tt.f.Text, tt.want} {
			if !strings.Contains(out, w) {
				t.Errorf("openssl output lacks %q:\n%s", w, out)
			}
		}
	}
}

// With QCStatement the TSTInfo carries the qcStatements extension with
// esi4-qtstStatement-1; openssl shows it and still verifies the token,
// and the token parses, KSI layer included.
func TestQCStatement(t *testing.T) {
	openssl := needOpenSSL(t)
	dir := t.TempDir()
	tsa := newTSA(t, "ecdsa")
	tsa.signer.QCStatement = true
	rootPEM := tsa.writeRoot(t, dir)
	doc, _, reqDER := opensslQuery(t, openssl, dir, "a qualified time-stamp\n", "-sha256", "-cert")
	resp, _ := issue(t, tsa.signer, reqDER, time.Now())
	tsr := filepath.Join(dir, "resp.tsr")
	if err := os.WriteFile(tsr, resp, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, openssl, "ts", "-reply", "-in", tsr, "-text")
	if err != nil || !strings.Contains(out, "qcStatements") {
		t.Fatalf("openssl ts -reply -text: %v, want the qcStatements extension:\n%s", err, out)
	}
	if out, err := run(t, openssl, "ts", "-verify", "-in", tsr, "-data", doc, "-CAfile", rootPEM); err != nil {
		t.Fatalf("openssl ts -verify: %v\n%s", err, out)
	}
	tok, err := tsp.ParseResponse(resp)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tok.KSI(); err != nil {
		t.Fatal(err)
	}
}
