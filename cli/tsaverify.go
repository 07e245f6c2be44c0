package cli

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/tsp"
	"github.com/tempel-ksi/tempel/verifier"
)

// RFC 3161 tokens in tempel verify: a .tsr (TimeStampResp) or .tst (bare
// token) is verified in two layers. The TSA layer is the token's CMS
// signature and certificate chain, checked against --tsa-root; the KSI
// layer is the embedded KSI signature, which must be a signature of this
// very token (its RFC 3161 record rebuilds the TSTInfo and signed
// attributes, its aggregation time is the genTime) and is verified with
// the policy asked for, the message imprint as its document hash.

const flagTSARoot = "tsa-root"

// tsaRootFlag names the roots trusted for TSA certificates. They are
// apart from --trust-root: a root trusted to sign publications files is
// not thereby trusted to certify time-stamping authorities.
func tsaRootFlag() ucli.Flag {
	return &ucli.StringSliceFlag{
		Name:    flagTSARoot,
		EnvVars: []string{"TEMPEL_TSA_ROOT"},
		Usage:   "trusted root certificate (`PEM/DER` file) of the TSA certificates of RFC 3161 tokens (repeatable; a development server's is DATA-DIR/keys/root.pem)",
	}
}

// tsaRoots loads --tsa-root; nil when none was given.
func tsaRoots(c *ucli.Context) (*x509.CertPool, error) {
	paths := nonEmptyValues(c.StringSlice(flagTSARoot))
	if len(paths) == 0 {
		return nil, nil
	}
	pool := x509.NewCertPool()
	for _, p := range paths {
		certs, err := verifier.LoadCertificates(p)
		if err != nil {
			return nil, inputErrorf("cannot read TSA root %s: %v", p, trimPkg(err))
		}
		for _, cert := range certs {
			pool.AddCert(cert)
		}
	}
	return pool, nil
}

// isToken tells a DER time-stamp token or response (a SEQUENCE) from a
// KSI signature (TLV element 0x800, first byte 0x88).
func isToken(b []byte) bool { return len(b) > 0 && b[0] == 0x30 }

// isTokenName reports whether a name is that of a token file.
func isTokenName(p string) bool {
	return strings.HasSuffix(p, tsrSuffix) || strings.HasSuffix(p, tstSuffix)
}

// tokenDocument is the document a token file NAME.tsr, NAME.tst or
// NAME.tsr.ext.tsr (as extend writes it) belongs to.
func tokenDocument(p string) string {
	for _, s := range []string{tsrSuffix, tstSuffix} {
		if strings.HasSuffix(p, s+".ext"+s) {
			return strings.TrimSuffix(p, s+".ext"+s)
		}
	}
	return strings.TrimSuffix(strings.TrimSuffix(p, tsrSuffix), tstSuffix)
}

// tokenBeside is the token of document p when it has no .ksig: the
// extended form first, as for signatures. "" when there is none.
func tokenBeside(p string) string {
	for _, s := range []string{tsrSuffix, tstSuffix} {
		for _, name := range []string{p + s + ".ext" + s, p + s} {
			if fileExists(name) {
				return name
			}
		}
	}
	return ""
}

// tokenView is the TSA layer of a token in verify's report.
type tokenView struct {
	// Result of the TSA layer: OK, FAILED, or NOT CHECKED (no --tsa-root).
	Result      string `json:"result"`
	Message     string `json:"message,omitempty"`
	GenTime     string `json:"gen_time"`
	Serial      string `json:"serial"`
	Policy      string `json:"policy"`
	Imprint     string `json:"message_imprint"`
	Signer      string `json:"signer,omitempty"`
	Response    bool   `json:"response"`
	KSIInToken  bool   `json:"ksi_signature_matches_token"`
	KSIMismatch string `json:"ksi_mismatch,omitempty"`
}

const (
	tsaOK         = "OK"
	tsaFailed     = "FAILED"
	tsaNotChecked = "NOT CHECKED"
)

// Codes of the verdicts the TSA layer decides (the KSI codes are the
// verifier's).
const (
	codeTSASignature verifier.Code = "TSA-01" // TSA signature or certificate chain invalid
	codeTSAKSI       verifier.Code = "TSA-02" // the KSI signature is not one of this token
)

// verifyToken verifies the token b against the document (docFile or
// j.hash) with policy p: both layers. It fills v.
func verifyToken(ctx context.Context, j verifyJob, b []byte, docFile *os.File, p verifier.Policy, opts verifier.Options, roots *x509.CertPool, v *verifyView) (*verifyView, error) {
	tok, err := tsp.Parse(b)
	if err != nil {
		return v, fmt.Errorf("%s is neither a KSI signature nor a valid time-stamp token: %s", j.sig, strings.TrimPrefix(err.Error(), "tsp: "))
	}
	imp, err := tok.Imprint()
	if err != nil {
		return v, fmt.Errorf("%s: %s", j.sig, strings.TrimPrefix(err.Error(), "tsp: "))
	}
	tv := &tokenView{
		GenTime: formatTime(uint64(tok.GenTime.Unix())), Serial: tok.Serial.String(), Policy: tok.Policy.String(),
		Imprint: imp.String(), Response: tok.IsResponse(),
	}
	if cert := signerOf(tok); cert != nil {
		tv.Signer = formatName(cert.Subject)
	}
	v.Token = tv
	v.SignedHash = imp.String()
	v.SigningTime = tv.GenTime
	doc := j.hash
	if docFile != nil {
		if doc, err = hashDocument(docFile, imp.Alg()); err != nil {
			return v, err
		}
	}
	if doc != nil {
		v.DocumentHash = doc.String()
	}
	// The TSA layer.
	tv.Result = tsaNotChecked
	if roots != nil {
		tv.Result = tsaOK
		if err := tok.VerifyTSA(roots, nil, tok.GenTime); err != nil {
			tv.Result, tv.Message = tsaFailed, strings.TrimPrefix(err.Error(), "tsp: ")
		}
	}
	// The KSI layer: the signature must be this token's.
	sig, err := tok.KSI()
	if errors.Is(err, tsp.ErrNoKSI) {
		v.tsaOnly(tv, doc, imp)
		return v, nil
	}
	if err != nil {
		tv.KSIMismatch = strings.TrimPrefix(err.Error(), "tsp: ")
		v.tokenFail(codeTSAKSI, "KSISignatureOfToken", "the embedded KSI signature is not a signature of this token: "+tv.KSIMismatch)
		return v, nil
	}
	tv.KSIInToken = true
	v.describe(sig)
	opts.Document = doc
	v.setReport(verifier.Verify(ctx, sig, p, opts), opts.PublicationsFile != nil)
	// A wrong document is the verifier's GEN-01 (the KSI signature's
	// document is the message imprint); a bad TSA signature fails the
	// token whatever the KSI layer says.
	if tv.Result == tsaFailed && v.result != verifier.FAIL {
		v.tokenFail(codeTSASignature, "TSASignature", "the TSA signature does not verify: "+tv.Message)
		return v, nil
	}
	v.Rules = append(tv.rules(), v.Rules...)
	return v, nil
}

// rules are the TSA layer's rules, before the verifier's in --verbose.
func (t *tokenView) rules() []verifier.RuleResult {
	tsa := verifier.RuleResult{Rule: "TSASignature", Result: verifier.OK}
	if t.Result == tsaNotChecked {
		tsa.Result, tsa.Message = verifier.NA, "no --"+flagTSARoot
	}
	return []verifier.RuleResult{tsa, {Rule: "KSISignatureOfToken", Result: verifier.OK}}
}

// tsaOnly decides a token without a KSI signature (another TSA's) by its
// TSA layer alone: OK only when that was checked and the document is the
// token's; without --tsa-root nothing vouches for it.
func (v *verifyView) tsaOnly(tv *tokenView, doc, imp ksi.Imprint) {
	tv.KSIMismatch = "the token carries no KSI signature"
	switch {
	case tv.Result == tsaFailed:
		v.tokenFail(codeTSASignature, "TSASignature", "the TSA signature does not verify: "+tv.Message)
	case doc != nil && !doc.Equal(imp):
		v.Verdict, v.result, v.Result = verdictFailed, verifier.FAIL, verifier.FAIL.String()
		v.Code, v.Rule, v.Message = verifier.GEN01, "DocumentHash", fmt.Sprintf("%s: the document's hash %s is not the token's message imprint %s", verifier.GEN01.Text(), doc, imp)
	case tv.Result == tsaOK:
		v.Verdict, v.result, v.Result = verdictOK, verifier.OK, verifier.OK.String()
		v.Anchor = "the TSA certificate chain to --" + flagTSARoot + " only: the token carries no KSI signature"
	default:
		v.Verdict, v.result, v.Result = verdictInconclusive, verifier.NA, verifier.NA.String()
		v.Code, v.Rule = verifier.GEN02, "TSASignature"
		v.Message = verifier.GEN02.Text() + ": the token carries no KSI signature and its TSA signature was not checked"
		v.Hint = "give the TSA's root certificate with --" + flagTSARoot + " CERT"
	}
}

// tokenFail makes the verdict a failure of the TSA layer.
func (v *verifyView) tokenFail(code verifier.Code, rule, msg string) {
	v.Verdict, v.result, v.Result = verdictFailed, verifier.FAIL, verifier.FAIL.String()
	v.Code, v.Rule, v.Message = code, rule, msg
	v.Rules = append([]verifier.RuleResult{{Rule: rule, Result: verifier.FAIL, Code: code, Message: msg}}, v.Rules...)
	v.Anchor, v.Hint = "", ""
}

// signerOf is the token's certificate that signed it, nil when it
// carries none.
func signerOf(tok *tsp.Token) *x509.Certificate {
	for _, c := range tok.Certificates {
		if tok.SignerSerial != nil && c.SerialNumber.Cmp(tok.SignerSerial) == 0 && bytes.Equal(c.RawIssuer, tok.SignerIssuer) {
			return c
		}
	}
	return nil
}

// writeTokenText adds the TSA layer to verify's text report.
func (t *tokenView) writeText(w io.Writer) {
	line := func(label, value string) { fmt.Fprintf(w, "  %-16s %s\n", label+":", value) }
	what := "time-stamp token (RFC 3161)"
	if t.Response {
		what = "time-stamp response (RFC 3161)"
	}
	line("token", what)
	switch t.Result {
	case tsaOK:
		line("TSA signature", "OK: verified with the certificate chain to --"+flagTSARoot)
	case tsaFailed:
		line("TSA signature", "FAILED: "+t.Message)
	default:
		line("TSA signature", "not checked (give --"+flagTSARoot+" CERT to check it; the KSI signature below does not need it)")
	}
	if t.Signer != "" {
		line("TSA", t.Signer)
	}
	line("TSA time", t.GenTime)
	line("serial", t.Serial)
	line("TSA policy", t.Policy)
	if t.KSIInToken {
		line("KSI signature", "embedded, a signature of this token at its genTime; checked as follows")
	}
}
