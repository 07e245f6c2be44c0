package webverify

import (
	"fmt"
	"hash"

	"github.com/tempel-ksi/tempel/ksi"
)

// DocumentHasher hashes a document in pieces, with the algorithm one
// signature needs, so that the page never holds a large document in
// memory: it reads the file a slice at a time and writes each into the
// hasher. Its Imprint goes into [Input.DocumentHash].
type DocumentHasher struct {
	alg  ksi.HashAlg
	h    hash.Hash
	n    int64
	head []byte // the first MaxSignatureSize+1 bytes, for Input.DocumentHead
}

// NewDocumentHasher reads the signature (a .ksig or an RFC 3161 token,
// as [Check] does) for the algorithm of its document hash. When the
// signature cannot be read, or names an algorithm this build cannot
// compute, there is nothing to hash with and the result says why, as
// Check would; the document is then not read at all.
func NewDocumentHasher(signature []byte) (d *DocumentHasher, res *Result) {
	defer func() {
		if r := recover(); r != nil {
			d, res = nil, &Result{Status: Inconclusive, Reason: fmt.Sprintf("internal error while reading the signature: %v", r)}
		}
	}()
	switch {
	case len(signature) == 0:
		return nil, &Result{Status: Inconclusive, Reason: "no signature chosen: pick the .ksig (or RFC 3161 token) that came with the document"}
	case len(signature) > MaxSignatureSize:
		return nil, &Result{Status: Failed, Reason: "the signature file is too large to be a KSI signature or a time-stamp token"}
	}
	sig, r, ok := signatureOf(signature)
	if !ok {
		return nil, &r
	}
	alg := sig.DocumentHash().Alg()
	h, err := alg.New()
	if err != nil {
		return nil, &Result{Status: Inconclusive, Kind: r.Kind, Reason: fmt.Sprintf("the signature uses the hash algorithm %s, which this page cannot compute: %s", alg, trimPkg(err))}
	}
	return &DocumentHasher{alg: alg, h: h}, nil
}

// Write adds the next piece of the document.
func (d *DocumentHasher) Write(p []byte) {
	d.h.Write(p)
	d.n += int64(len(p))
	if room := MaxSignatureSize + 1 - len(d.head); room > 0 {
		d.head = append(d.head, p[:min(room, len(p))]...)
	}
}

// Head is the document's first bytes, for [Input.DocumentHead].
func (d *DocumentHasher) Head() []byte { return d.head }

// Size is how many bytes were written.
func (d *DocumentHasher) Size() int64 { return d.n }

// Imprint is the imprint of everything written.
func (d *DocumentHasher) Imprint() ksi.Imprint {
	imp, err := ksi.NewImprint(d.alg, d.h.Sum(nil))
	if err != nil {
		return nil // not reached: the algorithm made the hash
	}
	return imp
}
