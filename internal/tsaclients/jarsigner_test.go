package tsaclients

import (
	"archive/zip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// storePass protects the test's throwaway Java key and trust stores.
const storePass = "tsaclients"

// jarsigner signs a jar with a time-stamp from the front door (-tsa);
// jarsigner -verify -strict passes with a trust store that holds the
// signer's CA and the TSA root, and fails without the TSA root. The
// token is taken out of the jar's signature block and verified
// keylessly.
func TestJarsigner(t *testing.T) {
	s := tsaServer(t)
	jarsigner := need(t, "jarsigner", "a JDK: Debian package openjdk-17-jdk-headless")
	keytool := need(t, "keytool", "a JDK: Debian package openjdk-17-jdk-headless")
	openssl := need(t, "openssl", "Debian package openssl")
	dir := t.TempDir()
	sf := codeSigner(t, dir)
	// keytool cannot import a PEM key: openssl makes the PKCS #12 key store.
	keys := filepath.Join(dir, "signer.p12")
	run(t, dir, openssl, "pkcs12", "-export", "-in", sf.cert, "-inkey", sf.key, "-certfile", sf.ca,
		"-name", "signer", "-passout", "pass:"+storePass, "-out", keys)
	trust := filepath.Join(dir, "trust.p12")
	noTSA := filepath.Join(dir, "trust-without-tsa.p12")
	for _, store := range []string{trust, noTSA} {
		run(t, dir, keytool, "-importcert", "-noprompt", "-keystore", store, "-storetype", "PKCS12",
			"-storepass", storePass, "-alias", "codesigning-ca", "-file", sf.ca)
	}
	run(t, dir, keytool, "-importcert", "-noprompt", "-keystore", trust, "-storetype", "PKCS12",
		"-storepass", storePass, "-alias", "tempel-root", "-file", s.rootPEM())

	in := filepath.Join(dir, "in.jar")
	makeJar(t, in)
	signed := filepath.Join(dir, "signed.jar")
	run(t, dir, jarsigner, "-keystore", keys, "-storepass", storePass, "-tsa", s.tsaURL(), "-signedjar", signed, in, "signer")
	out := run(t, dir, jarsigner, "-verify", "-strict", "-verbose", "-keystore", trust, "-storepass", storePass, signed)
	if !strings.Contains(string(out), "jar verified.") || !strings.Contains(string(out), "Timestamped by") {
		t.Fatalf("jarsigner -verify -strict:\n%s", out)
	}
	if out, err := exec.Command(jarsigner, "-verify", "-strict", "-keystore", noTSA, "-storepass", storePass, signed).CombinedOutput(); err == nil {
		t.Fatalf("jarsigner -verify -strict passed without trusting the TSA root:\n%s", out)
	}

	block := signatureBlock(t, signed)
	token, err := findAttribute(block, oidTimeStampToken)
	if err != nil {
		t.Fatalf("no RFC 3161 token in the jar's signature block: %v", err)
	}
	keyless(t, s, checkToken(t, s, token))
}

// makeJar writes a jar: a manifest and one class-less resource.
func makeJar(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z := zip.NewWriter(f)
	for _, e := range []struct{ name, body string }{
		{"META-INF/MANIFEST.MF", "Manifest-Version: 1.0\r\nCreated-By: tsaclients\r\n\r\n"},
		{"notice.txt", "a release signed and time-stamped\n"},
	} {
		w, err := z.Create(e.name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(w, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
}

// signatureBlock returns the PKCS #7 signature block (META-INF/*.RSA,
// .EC or .DSA) of a signed jar.
func signatureBlock(t *testing.T, jar string) []byte {
	t.Helper()
	z, err := zip.OpenReader(jar)
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	for _, f := range z.File {
		dir, ext := filepath.Dir(f.Name), strings.ToUpper(filepath.Ext(f.Name))
		if dir != "META-INF" || (ext != ".RSA" && ext != ".EC" && ext != ".DSA") {
			continue
		}
		r, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		b, err := io.ReadAll(io.LimitReader(r, 1<<20))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	t.Fatal("the signed jar has no signature block")
	return nil
}
