package cli

import (
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/tsp"
)

const flagExtractKSI = "extract-ksig"

// extractKSIFlag is inspect's --extract-ksig.
func extractKSIFlag() ucli.Flag {
	return &ucli.StringFlag{Name: flagExtractKSI, Usage: "of an RFC 3161 token, write the embedded KSI signature to `PATH` (a .ksig that ksi verify -f DOCUMENT accepts)"}
}

// tokenInspectView is what inspect shows of an RFC 3161 token: the
// TSTInfo, the signer and certificates, then its KSI signature as inspect
// shows a .ksig.
type tokenInspectView struct {
	Type         string         `json:"type"` // "rfc3161-response" or "rfc3161-token"
	Size         int            `json:"size"`
	Version      string         `json:"version"`
	Policy       string         `json:"policy"`
	Imprint      string         `json:"message_imprint"`
	HashOID      string         `json:"hash_algorithm_oid"`
	Serial       string         `json:"serial"`
	GenTime      string         `json:"gen_time"`
	Accuracy     string         `json:"accuracy,omitempty"`
	Nonce        string         `json:"nonce,omitempty"` // hex of the INTEGER content
	DigestAlg    string         `json:"digest_algorithm"`
	SignatureAlg string         `json:"signature_algorithm"`
	SignatureLen int            `json:"signature_size"`
	Signer       string         `json:"signer"` // issuer and serial of the signer's certificate
	Certificates []certView     `json:"certificates"`
	KSISignature *signatureView `json:"ksi_signature,omitempty"`
	KSIError     string         `json:"ksi_error,omitempty"` // why the KSI signature is not shown
}

// inspectToken parses a token for inspect and, with --extract-ksig,
// writes its KSI signature.
func inspectToken(c *ucli.Context, path string, b []byte) (*tokenInspectView, error) {
	tok, err := tsp.Parse(b)
	if err != nil {
		return nil, inputErrorf("%s is not a valid RFC 3161 time-stamp token or response: %s", path, strings.TrimPrefix(err.Error(), "tsp: "))
	}
	v := newTokenInspectView(tok)
	if out := c.String(flagExtractKSI); out != "" {
		if tok.KSISignature == nil {
			return nil, inputErrorf("%s carries no KSI signature to extract", path)
		}
		// The signature is checked to belong to the token before it is
		// written: an extracted .ksig is taken on its own from then on.
		if _, err := tok.KSI(); err != nil {
			return nil, inputErrorf("%s: the embedded KSI signature is not this token's: %s", path, strings.TrimPrefix(err.Error(), "tsp: "))
		}
		if _, err := os.Lstat(out); err == nil {
			return nil, inputErrorf("%s already exists: remove it first (inspect never overwrites)", out)
		}
		if err := writeNew(out, tok.KSISignature, false); err != nil {
			return nil, inputErrorf("cannot write the KSI signature: %v", err)
		}
	}
	return v, nil
}

func newTokenInspectView(tok *tsp.Token) *tokenInspectView {
	v := &tokenInspectView{
		Type: "rfc3161-token", Size: len(tok.Raw), Version: "1",
		Policy: tok.Policy.String(), HashOID: tok.HashOID.String(), Serial: tok.Serial.String(),
		GenTime:   tok.GenTime.UTC().Format(time.RFC3339),
		DigestAlg: oidName(tok.DigestAlg.String()), SignatureAlg: oidName(tok.SignatureAlg.String()), SignatureLen: len(tok.Signature),
		Certificates: make([]certView, 0, len(tok.Certificates)),
	}
	if tok.IsResponse() {
		v.Type = "rfc3161-response"
	}
	if imp, err := tok.Imprint(); err == nil {
		v.Imprint = imp.String()
	} else {
		v.Imprint = tok.HashOID.String() + ":" + hex.EncodeToString(tok.Digest)
	}
	if tok.Accuracy > 0 {
		v.Accuracy = tok.Accuracy.String()
	}
	if tok.Nonce != nil {
		v.Nonce = strings.ToUpper(hex.EncodeToString(tok.Nonce))
	}
	v.Signer = "serial " + tok.SignerSerial.String()
	if cert := signerOf(tok); cert != nil {
		v.Signer = formatName(cert.Subject) + " (" + v.Signer + ")"
	}
	for _, c := range tok.Certificates {
		v.Certificates = append(v.Certificates, tokenCertView(c))
	}
	switch sig, err := ksiOfToken(tok); {
	case err != nil:
		v.KSIError = err.Error()
	default:
		v.KSISignature = newSignatureView(sig)
	}
	return v
}

// ksiOfToken parses the embedded signature; inspect shows it even when it
// does not match the token, saying so.
func ksiOfToken(tok *tsp.Token) (*ksi.Signature, error) {
	if tok.KSISignature == nil {
		return nil, fmt.Errorf("the token carries no KSI signature")
	}
	sig, err := ksi.ParseSignature(tok.KSISignature)
	if err != nil {
		return nil, fmt.Errorf("the embedded KSI signature does not parse: %s", trimPkg(err))
	}
	return sig, nil
}

func tokenCertView(c *x509.Certificate) certView {
	return certView{
		ID:        "serial " + c.SerialNumber.String(),
		Subject:   formatName(c.Subject),
		Issuer:    formatName(c.Issuer),
		NotBefore: c.NotBefore.UTC().Format(time.RFC3339),
		NotAfter:  c.NotAfter.UTC().Format(time.RFC3339),
	}
}

func (v *tokenInspectView) writeText(w io.Writer) {
	t := textWriter{w}
	what := "RFC 3161 time-stamp token"
	if v.Type == "rfc3161-response" {
		what = "RFC 3161 time-stamp response (granted)"
	}
	t.head("%s (%d bytes)", what, v.Size)
	t.head("TSTInfo")
	t.field(2, "policy", v.Policy)
	t.field(2, "message imprint", v.Imprint)
	t.field(2, "serial", v.Serial)
	t.field(2, "genTime", v.GenTime)
	if v.Accuracy != "" {
		t.field(2, "accuracy", v.Accuracy)
	}
	if v.Nonce != "" {
		t.field(2, "nonce", v.Nonce)
	}
	t.head("TSA signature (not verified here: use tempel verify --%s)", flagTSARoot)
	t.field(2, "signer", v.Signer)
	t.field(2, "digest algorithm", v.DigestAlg)
	t.field(2, "signature alg", v.SignatureAlg)
	t.field(2, "signature size", v.SignatureLen)
	t.head("Certificates (%d)", len(v.Certificates))
	for _, c := range v.Certificates {
		t.head("  %s  %s", c.ID, c.Subject)
		t.head("  %s  issued by %s, valid %s to %s", strings.Repeat(" ", len(c.ID)), c.Issuer, c.NotBefore, c.NotAfter)
	}
	if v.KSISignature == nil {
		t.head("No KSI signature shown: %s", v.KSIError)
		return
	}
	t.head("Embedded KSI signature (unsigned attribute %s)", tsp.OIDKSISignature)
	v.KSISignature.writeText(w)
}

// tokenAlgNames name the algorithm OIDs a token's SignerInfo names.
var tokenAlgNames = map[string]string{
	"2.16.840.1.101.3.4.2.1": "SHA-256",
	"2.16.840.1.101.3.4.2.2": "SHA-384",
	"2.16.840.1.101.3.4.2.3": "SHA-512",
	"1.2.840.113549.1.1.1":   "rsaEncryption",
}

// oidName is an OID with its name, when known: "SHA-256 (2.16.…)".
func oidName(oid string) string {
	name, ok := tokenAlgNames[oid]
	if !ok {
		name, ok = signatureAlgorithmNames[oid]
	}
	if !ok {
		return oid
	}
	return name + " (" + oid + ")"
}
