package webverify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/tsp"
	"github.com/tempel-ksi/tempel/verifier"
)

// Limits on what the page accepts. The page hashes a document in pieces
// ([DocumentHasher]), so its memory does not grow with the document;
// MaxDocumentSize bounds only the time (WebAssembly hashes some 50 to 100
// MB/s). A document handed over whole ([Input.Document]) is held in
// memory, so it has the smaller MaxDocumentBytes. The signature and the
// publications file have the core's own limits.
const (
	MaxDocumentSize  = 4 << 30
	MaxDocumentBytes = 256 << 20
	MaxSignatureSize = ksi.MaxObjectSize
	MaxPubfileSize   = ksi.MaxPublicationsFileSize
)

// Statuses of a [Result]: the first word of the page's #result.
const (
	Verified     = "VERIFIED"
	Failed       = "FAILED"
	Inconclusive = "INCONCLUSIVE"
)

// Input is one verification the page asks for.
type Input struct {
	// Document is the document's bytes, or nil when DocumentHash is
	// given instead.
	Document []byte
	// DocumentHash is the document's imprint computed in pieces by a
	// [DocumentHasher] made for this very signature; it takes the place
	// of Document.
	DocumentHash ksi.Imprint
	// DocumentHead is the document's first bytes (up to
	// MaxSignatureSize+1), given with DocumentHash; it serves only to
	// tell a person who chose a signature as the document.
	DocumentHead []byte
	Signature    []byte // a .ksig, or an RFC 3161 token or response
	// PubStr is a publication string the person typed; it takes
	// precedence over a publications file.
	PubStr string
	// Pubfile is a publications file's bytes, believed only once its
	// signature chains to Root and its signer meets Constraints.
	Pubfile []byte
	// PubfileSource says where Pubfile came from, for the report
	// ("this service's publications file", a file name).
	PubfileSource string
	// Root is the PEM root certificate the page was built with; empty
	// when it was built without one (then only a publication string
	// can anchor a signature).
	Root []byte
	// Constraints on the publications file's signer, e.g.
	// E=publications@tempel.test.
	Constraints []string
	// Now is the time at which certificates must be valid.
	Now time.Time
}

// Result is what the page shows: plain words, no rule tables.
type Result struct {
	Status         string `json:"status"`
	Code           string `json:"code,omitempty"`
	Reason         string `json:"reason"`
	SigningTime    string `json:"signingTime,omitempty"` // aggregation time, UTC, RFC 3339
	Identity       string `json:"identity,omitempty"`
	CheckedAgainst string `json:"checkedAgainst,omitempty"`
	Policy         string `json:"policy,omitempty"`
	DocumentHash   string `json:"documentHash,omitempty"`
	Publication    string `json:"publication,omitempty"`
	Kind           string `json:"kind,omitempty"` // what the signature file is
	// Detail is the verifier's own words (its code's text and message,
	// with hashes), for whoever needs more than Reason.
	Detail string   `json:"detail,omitempty"`
	Notes  []string `json:"notes,omitempty"`
}

// Check verifies in.Signature against in.Document with the trust in
// in, through the same verifier as tempel verify. It never panics on
// bad input and never answers VERIFIED without a trust anchor.
func Check(ctx context.Context, in Input) (res Result) {
	defer func() {
		// A parser bug must not leave the page without an answer; an
		// answer that proves nothing is the safe one.
		if r := recover(); r != nil {
			res = Result{Status: Inconclusive, Reason: fmt.Sprintf("internal error while checking: %v", r)}
		}
	}()
	switch {
	case len(in.Signature) == 0:
		return Result{Status: Inconclusive, Reason: "no signature chosen: pick the .ksig (or RFC 3161 token) that came with the document"}
	case in.Document == nil && in.DocumentHash == nil: // an empty file is a document; none chosen is not
		return Result{Status: Inconclusive, Reason: "no document chosen: pick the document the signature is for"}
	case len(in.Document) > MaxDocumentBytes:
		return Result{Status: Inconclusive, Reason: fmt.Sprintf("the document is larger than this check takes in one piece (%d MiB); use tempel verify", MaxDocumentBytes>>20)}
	case len(in.Signature) > MaxSignatureSize:
		return Result{Status: Failed, Reason: "the signature file is too large to be a KSI signature or a time-stamp token"}
	case len(in.Pubfile) > MaxPubfileSize:
		return Result{Status: Inconclusive, Reason: "the publications file is too large"}
	}
	opts, policy, against, res, ok := trustOf(in)
	if !ok {
		return res
	}
	sig, res, ok := signatureOf(in.Signature)
	if !ok {
		return res
	}
	imp, err := documentImprint(in, sig.DocumentHash().Alg())
	if err != nil {
		return Result{Status: Inconclusive, Reason: err.Error(), Kind: res.Kind}
	}
	opts.Document = imp
	rep := verifier.Verify(ctx, sig, policy, opts)
	res.Policy = policy.String()
	res.DocumentHash = imp.String()
	res.SigningTime = sig.SigningUTC().Format(time.RFC3339)
	res.Identity = strings.Join(sig.Identity(), " :: ")
	if sig.PublicationRecord != nil {
		res.Publication = sig.PublicationRecord.Data.String()
	}
	res.Code = string(rep.Code)
	switch rep.Result {
	case verifier.OK:
		res.Status = Verified
		res.Reason = "the signature is valid and the document is the one that was signed"
		res.CheckedAgainst = describeAnchor(rep.Anchor, against)
		if policy == verifier.Internal {
			// Consistent in itself proves nothing about when: refuse to say
			// verified without an anchor.
			res.Status = Inconclusive
			res.Reason = "the signature matches the document and is consistent in itself, but there is nothing to check it against: type a publication string or choose a publications file"
			res.CheckedAgainst = "nothing outside the signature"
		}
	case verifier.FAIL:
		res.Status = Failed
		res.Reason, res.Detail = failReason(rep.Code, in.PubStr != ""), detail(rep)
		if rep.Code == verifier.GEN01 && isSignature(in) {
			res.Reason += "; the file chosen as the document is itself a signature (a .ksig or a time-stamp token): choose the document that was signed"
		}
	default:
		res.Status = Inconclusive
		res.Reason, res.Detail = inconclusiveReason(rep), detail(rep)
	}
	return res
}

// trustOf picks the policy and what it checks against. ok is false when
// the trust given cannot be used; res then says why.
func trustOf(in Input) (opts verifier.Options, p verifier.Policy, against string, res Result, ok bool) {
	if s := strings.TrimSpace(in.PubStr); s != "" {
		pd, err := ksi.ParsePublicationString(s)
		if err != nil {
			return opts, 0, "", Result{Status: Inconclusive, Reason: "the publication string is not valid: " + trimPkg(err) + " (copy it again from the printed publication)"}, false
		}
		opts.UserPublication = &pd
		return opts, verifier.UserPublicationBased, "the publication string you gave (" + pd.String() + ")", res, true
	}
	if len(in.Pubfile) == 0 {
		return opts, verifier.Internal, "", res, true
	}
	pf, err := ksi.ParsePublicationsFile(in.Pubfile)
	if err != nil {
		return opts, 0, "", Result{Status: Inconclusive, Reason: "the publications file is not valid: " + trimPkg(err)}, false
	}
	if len(in.Root) == 0 {
		return opts, 0, "", Result{Status: Inconclusive, Reason: "this page was built without a root certificate, so it cannot tell a genuine publications file from a forged one: type a publication string instead"}, false
	}
	roots, fp, err := rootPool(in.Root)
	if err != nil {
		return opts, 0, "", Result{Status: Inconclusive, Reason: err.Error()}, false
	}
	cs := make([]verifier.Constraint, 0, len(in.Constraints))
	for _, s := range in.Constraints {
		c, err := verifier.ParseConstraint(s)
		if err != nil {
			return opts, 0, "", Result{Status: Inconclusive, Reason: "the page's constraint on the publications file is not valid: " + trimPkg(err)}, false
		}
		cs = append(cs, c)
	}
	if err := verifier.VerifyPublicationsFile(pf, verifier.Trust{Roots: roots, Constraints: cs, Time: in.Now}); err != nil {
		return opts, 0, "", Result{Status: Inconclusive, Reason: "the publications file could not be trusted: " + trimPkg(err)}, false
	}
	src := in.PubfileSource
	if src == "" {
		src = "the publications file"
	}
	opts.PublicationsFile = pf
	return opts, verifier.Default, fmt.Sprintf("%s, its signature checked against the root certificate %s (SHA-256 %s) and %s",
		src, fp.subject, fp.sum, strings.Join(in.Constraints, ", ")), res, true
}

type rootInfo struct{ subject, sum string }

// rootPool reads the page's root certificate(s).
func rootPool(pemBytes []byte) (*x509.CertPool, rootInfo, error) {
	certs, err := verifier.ParseCertificates(pemBytes)
	if err != nil || len(certs) == 0 {
		return nil, rootInfo{}, fmt.Errorf("the page's root certificate cannot be read: %v", err)
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	sum := sha256.Sum256(certs[0].Raw)
	return pool, rootInfo{subject: verifier.SubjectString(certs[0].Subject), sum: hex.EncodeToString(sum[:8])}, nil
}

// signatureOf parses a .ksig, or takes the KSI signature out of an RFC
// 3161 token after checking that it is one of this very token.
func signatureOf(b []byte) (*ksi.Signature, Result, bool) {
	if kind := otherContainer(b); kind != "" {
		// Signed in another form the CLI checks: not a damaged signature.
		return nil, Result{Status: Inconclusive, Kind: kind, Reason: "this page checks .ksig signatures and RFC 3161 time-stamp tokens; the signature file is " + kind + ": check it with tempel verify"}, false
	}
	if b[0] != 0x30 { // a DER SEQUENCE is a token; a KSI signature starts 0x88
		sig, err := ksi.ParseSignature(b)
		if err != nil {
			return nil, Result{Status: Failed, Kind: "KSI signature", Reason: "the signature file is damaged or is not a KSI signature: " + trimPkg(err)}, false
		}
		return sig, Result{Kind: "KSI signature"}, true
	}
	kind := "RFC 3161 time-stamp token"
	tok, err := tsp.Parse(b)
	if err != nil {
		return nil, Result{Status: Failed, Kind: kind, Reason: "the signature file is damaged or is neither a KSI signature nor a time-stamp token: " + trimPkg(err)}, false
	}
	if tok.IsResponse() {
		kind = "RFC 3161 time-stamp response"
	}
	sig, err := tok.KSI()
	if errors.Is(err, tsp.ErrNoKSI) {
		return nil, Result{Status: Inconclusive, Kind: kind, Reason: "the time-stamp token carries no KSI signature, so this page cannot check it"}, false
	}
	if err != nil {
		return nil, Result{Status: Failed, Kind: kind, Code: "TSA-02", Reason: "the KSI signature inside the token is not a signature of this token: " + trimPkg(err)}, false
	}
	// The KSI signature's document is the token's signed content; the
	// document itself must match the token's message imprint, which the
	// verifier checks against the KSI signature's input through the
	// RFC 3161 record.
	return sig, Result{Kind: kind, Notes: []string{"the time-stamp authority's own signature is not checked here; the KSI signature inside the token is"}}, true
}

// documentImprint is the document's imprint in the signature's
// algorithm alg: in.DocumentHash when the caller hashed it in pieces,
// which must then be of alg (a hasher made for another signature is the
// page's mistake, not a changed document), else the hash of in.Document.
func documentImprint(in Input, alg ksi.HashAlg) (ksi.Imprint, error) {
	if in.DocumentHash == nil {
		return hashDocument(in.Document, alg)
	}
	if _, err := ksi.ParseImprint(in.DocumentHash); err != nil || in.DocumentHash.Alg() != alg {
		return nil, fmt.Errorf("the document was hashed with %s, but the signature needs %s: choose the files again", in.DocumentHash.Alg(), alg)
	}
	return in.DocumentHash, nil
}

// isSignature says whether the document the person chose is itself a
// KSI signature or a time-stamp token, the usual way to pick the wrong
// file.
func isSignature(in Input) bool {
	b := in.Document
	if in.DocumentHash != nil {
		b = in.DocumentHead
	}
	if len(b) == 0 || len(b) > MaxSignatureSize {
		return false
	}
	_, _, ok := signatureOf(b)
	return ok
}

// otherContainer names the signed forms tempel verify takes that the
// page does not (ASiC-S containers, PDFs with a document time-stamp), by
// their first bytes; "" for anything else.
func otherContainer(b []byte) string {
	switch {
	case bytes.HasPrefix(b, []byte("PK\x03\x04")):
		return "a ZIP file (an ASiC-S container?)"
	case bytes.HasPrefix(b, []byte("%PDF-")):
		return "a PDF"
	}
	return ""
}

// hashDocument hashes the document with the signature's algorithm.
func hashDocument(doc []byte, alg ksi.HashAlg) (ksi.Imprint, error) {
	h, err := alg.New()
	if err != nil {
		return nil, fmt.Errorf("the signature uses the hash algorithm %s, which this page cannot compute: %s", alg, trimPkg(err))
	}
	h.Write(doc)
	return ksi.NewImprint(alg, h.Sum(nil))
}

// failReason says in plain words why a signature failed; the verifier's
// words go into Result.Detail.
func failReason(code verifier.Code, pubstr bool) string {
	switch {
	case code == verifier.GEN01:
		return "the document is not the one that was signed: it was changed, or it is another file"
	case code == verifier.INT13 || code == verifier.INT14 || code == verifier.INT15 || code == verifier.INT16 || code == verifier.INT17:
		return "the signature relies on a hash algorithm that was no longer trusted when it was made"
	case strings.HasPrefix(string(code), "INT-"), code == verifier.GEN03, code == verifier.GEN04:
		return "the signature is damaged or was changed: its parts do not fit together"
	case code == verifier.PUB04 || (strings.HasPrefix(string(code), "PUB-") && pubstr):
		return "the signature does not agree with the publication string you gave: one of them is not genuine"
	case strings.HasPrefix(string(code), "PUB-"):
		return "the signature does not agree with the publications file: it is not genuine"
	case code == verifier.KEY03:
		return "the service's certificate was not valid when the signature was made"
	case strings.HasPrefix(string(code), "KEY-"):
		return "the service's own signature inside it is not valid: it is not genuine"
	case strings.HasPrefix(string(code), "CAL-"):
		return "the signature does not agree with the service's calendar: it is not genuine"
	}
	return "the signature is not valid"
}

// inconclusiveReason says in plain words why the answer is neither yes
// nor no.
func inconclusiveReason(rep *verifier.Report) string {
	switch rep.Rule {
	case "ExtendingPermitted", "ExtenderPresent":
		return "the signature is older than the publication it was checked against and is not yet extended to it, so this page cannot link the two " +
			"(extend it with 'tempel extend', or ask for the extended signature; or check it against the service's publications file)"
	case "UserPublicationTime":
		return "the publication string you gave is not later than the signature: use a publication made after it was signed"
	case "CertificateExistence":
		return "the publications file does not hold the certificate of the service that made this signature: use a newer publications file, or a publication string"
	case "SuitablePublication", "CalendarAuthRecordPresent":
		return "neither a publication nor the service's own signature in it can be checked with this publications file: use a newer publications file, or a publication string"
	}
	return "the signature could not be checked with what was given (see the details)"
}

// detail is the verifier's verdict in its own words, with its code.
func detail(rep *verifier.Report) string {
	msg := rep.Message
	if msg == "" {
		msg = rep.Code.Text()
	}
	return string(rep.Code) + ": " + msg
}

// describeAnchor joins the verifier's anchor with what the page used.
func describeAnchor(anchor, against string) string {
	switch {
	case against == "":
		return anchor
	case anchor == "" || strings.HasPrefix(against, "the publication string"):
		return against
	}
	return anchor + " — via " + against
}

func trimPkg(err error) string {
	s := err.Error()
	for _, p := range []string{"ksi: ", "tsp: ", "verifier: ", "tlv: "} {
		s = strings.TrimPrefix(s, p)
	}
	return s
}
