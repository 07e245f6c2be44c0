package tsaclients

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// osslsigncode signs a Windows executable built here (Authenticode with
// an RFC 3161 countersignature from the front door, -ts) and verifies
// it with the TSA root; with another TSA root it refuses. The token is
// taken out of the signature and verified keylessly.
func TestOsslsigncode(t *testing.T) {
	s := tsaServer(t)
	tool := need(t, "osslsigncode", "Debian package osslsigncode")
	dir := t.TempDir()
	exe := windowsExe(t, dir)
	sf := codeSigner(t, dir)
	signed := filepath.Join(dir, "signed.exe")
	run(t, dir, tool, "sign", "-certs", sf.cert, "-key", sf.key, "-h", "sha256", "-ts", s.tsaURL(), "-in", exe, "-out", signed)
	out := run(t, dir, tool, "verify", "-in", signed, "-CAfile", sf.ca, "-TSA-CAfile", s.rootPEM())
	if !strings.Contains(string(out), "Timestamp Server Signature verification: ok") {
		t.Fatalf("osslsigncode verify did not check the time-stamp:\n%s", out)
	}
	// The code-signing CA did not issue the TSA certificate. osslsigncode
	// then checks the signer's certificate at the current time and may
	// still succeed: its report on the time-stamp is what must change.
	out, _ = exec.Command(tool, "verify", "-in", signed, "-CAfile", sf.ca, "-TSA-CAfile", sf.ca).CombinedOutput()
	if !strings.Contains(string(out), "Timestamp Server Signature verification: failed") {
		t.Fatalf("osslsigncode verify accepted the time-stamp with another TSA root:\n%s", out)
	}

	sig := filepath.Join(dir, "sig.der")
	run(t, dir, tool, "extract-signature", "-in", signed, "-out", sig)
	der := read(t, sig)
	token, err := findAttribute(der, oidSpcRFC3161)
	if err != nil {
		if token, err = findAttribute(der, oidTimeStampToken); err != nil {
			t.Fatalf("no RFC 3161 token in the Authenticode signature: %v", err)
		}
	}
	keyless(t, s, checkToken(t, s, token))
}

// windowsExe builds a hello-world Windows PE with the Go toolchain.
func windowsExe(t *testing.T, dir string) string {
	t.Helper()
	src := filepath.Join(dir, "hello.go")
	write(t, src, []byte("package main\n\nfunc main() { println(\"hello\") }\n"))
	exe := filepath.Join(dir, "hello.exe")
	cmd := exec.Command("go", "build", "-o", exe, src)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=windows", "GOARCH=amd64", "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("GOOS=windows go build: %v\n%s", err, out)
	}
	return exe
}
