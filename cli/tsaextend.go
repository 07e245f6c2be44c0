package cli

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/tsp"
	"github.com/tempel-ksi/tempel/verifier"
)

// extendedName is where extend writes the extended form of sigPath by
// default: SIG.ksig.ext.ksig for a signature, NAME.tsr.ext.tsr (or
// .tst.ext.tst) for a token, so that the result is still known as one.
func extendedName(sigPath string) string {
	for _, s := range []string{tsrSuffix, tstSuffix, asicSuffix} {
		if strings.HasSuffix(sigPath, s) {
			return sigPath + ".ext" + s
		}
	}
	return sigPath + extSuffix
}

// extendToken extends the KSI signature embedded in the token b and
// writes the token back to dst with only that attribute replaced: the
// TSA's signature covers the signed attributes, which do not change, so
// it stays valid. A response stays a response, a bare token a bare token.
func (r *extendRun) extendToken(v extendView, b []byte, dst string, overwrite bool) (extendView, int, error) {
	v, code, out, err := r.extendTokenBytes(v, b, dst, overwrite)
	if err != nil || out == nil {
		return v, code, err
	}
	if err := writeNew(dst, out, overwrite); err != nil {
		return v, ExitError, fmt.Errorf("cannot write the extended token: %v", err)
	}
	v.Status, v.Output = extStatusExtended, dst
	return v, ExitOK, nil
}

// extendTokenBytes returns the token b with its KSI signature extended;
// nil (and v saying so) when there is nothing to do.
func (r *extendRun) extendTokenBytes(v extendView, b []byte, dst string, overwrite bool) (extendView, int, []byte, error) {
	tok, err := tsp.Parse(b)
	if err != nil {
		return v, ExitError, nil, fmt.Errorf("neither a KSI signature nor a valid time-stamp token: %s", strings.TrimPrefix(err.Error(), "tsp: "))
	}
	sig, err := tok.KSI()
	if err != nil {
		return v, ExitError, nil, fmt.Errorf("the token's KSI signature cannot be extended: %s", strings.TrimPrefix(err.Error(), "tsp: "))
	}
	v.SigningTime = formatTime(sig.SigningTime())
	pub := r.tg.rec.Data
	if pr := sig.PublicationRecord; pr != nil && pr.Data.Time == pub.Time && pr.Data.Hash.Equal(pub.Hash) {
		v.Status = extStatusAlready
		return v, ExitOK, nil, nil
	}
	if done, ok := tokenExtendedAlready(tok, dst); ok && !overwrite && dst != v.Signature {
		v.Status, v.Output = extStatusAlready, dst
		v.PublicationString, v.PublicationTime = done.String(), formatTime(done.Time)
		return v, ExitOK, nil, nil
	}
	if err := r.reaches(v, sig); err != nil {
		return v, ExitInconclusive, nil, err
	}
	if !overwrite {
		if err := checkOutputs([]string{dst}, false); err != nil {
			return v, ExitError, nil, err
		}
	}
	ext, code, err := r.fetch(v, sig)
	if err != nil {
		return v, code, nil, err
	}
	out, code, err := tokenWithExtended(r, tok, ext, pub)
	if err != nil {
		return v, code, nil, err
	}
	return v, ExitOK, out, nil
}

// tokenWithExtended checks the extended signature against the
// publication, puts it into the token and checks the result: it parses,
// carries the new signature as a signature of itself, and what the TSA
// signed is byte for byte what it was.
func tokenWithExtended(r *extendRun, tok *tsp.Token, ext *ksi.Signature, pub ksi.PublishedData) ([]byte, int, error) {
	rep := verifier.Verify(r.ctx, ext, verifier.UserPublicationBased, verifier.Options{UserPublication: &pub})
	if rep.Result != verifier.OK {
		return nil, ExitFailed, fmt.Errorf("the extended signature does not verify against the publication: %s (%s, rule %s)", rep.Message, rep.Code, rep.Rule)
	}
	enc, err := ext.Encode()
	if err != nil {
		return nil, ExitError, fmt.Errorf("cannot encode the extended signature: %s", trimPkg(err))
	}
	var out []byte
	if tok.IsResponse() {
		out, err = tok.WithKSIResponse(enc)
	} else {
		out, err = tok.WithKSI(enc)
	}
	if err != nil {
		return nil, ExitError, fmt.Errorf("cannot put the extended signature into the token: %s", strings.TrimPrefix(err.Error(), "tsp: "))
	}
	back, err := tsp.Parse(out)
	if err == nil {
		_, err = back.KSI()
	}
	switch {
	case err != nil:
		return nil, ExitError, fmt.Errorf("the extended token does not read back: %s", strings.TrimPrefix(err.Error(), "tsp: "))
	case !bytes.Equal(back.SignedAttrs, tok.SignedAttrs) || !bytes.Equal(back.TSTInfo, tok.TSTInfo) || !bytes.Equal(back.Signature, tok.Signature):
		return nil, ExitError, fmt.Errorf("the extended token changed what the TSA signed: not written")
	}
	return out, ExitOK, nil
}

// tokenExtendedAlready reports whether dst holds this token (the same
// TSTInfo and TSA signature) with a KSI signature that reaches a
// publication, as an earlier run left it.
func tokenExtendedAlready(tok *tsp.Token, dst string) (ksi.PublishedData, bool) {
	b, err := readFileLimited(dst, tsp.MaxTokenSize)
	if err != nil || !isToken(b) {
		return ksi.PublishedData{}, false
	}
	done, err := tsp.Parse(b)
	if err != nil || !bytes.Equal(done.TSTInfo, tok.TSTInfo) || !bytes.Equal(done.Signature, tok.Signature) {
		return ksi.PublishedData{}, false
	}
	sig, err := done.KSI()
	if err != nil || sig.PublicationRecord == nil {
		return ksi.PublishedData{}, false
	}
	return sig.PublicationRecord.Data, true
}

// isExtendedToken reports whether a token's name is one extend wrote
// (NAME.tsr.ext.tsr), which a walk for tokens to extend skips.
func isExtendedToken(name string) bool {
	for _, s := range []string{tsrSuffix, tstSuffix, asicSuffix} {
		if strings.HasSuffix(name, s+".ext"+s) {
			return true
		}
	}
	return false
}
