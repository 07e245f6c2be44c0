package cli

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/pdfts"
	"github.com/tempel-ksi/tempel/tsp"
	"github.com/tempel-ksi/tempel/verifier"
)

// A PDF with an RFC 3161 document time-stamp (/SubFilter /ETSI.RFC3161,
// added by a PDF signer through POST /tsa) carries its own signature:
// `tempel verify file.pdf` checks the newest such time-stamp against the
// bytes it covers, both layers, as for a .tsr.

// maxPDFSize bounds the PDF read into memory to find its signatures.
const maxPDFSize = 1 << 30

// isPDF reports whether the file at p is a PDF, by its first bytes.
func isPDF(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	var head [5]byte
	_, err = io.ReadFull(f, head[:])
	return err == nil && string(head[:]) == "%PDF-"
}

// verifyPDF verifies the newest document time-stamp of the PDF j.sig
// against the bytes it covers.
func verifyPDF(ctx context.Context, j verifyJob, p verifier.Policy, opts verifier.Options, roots *x509.CertPool, v *verifyView) (*verifyView, error) {
	if j.doc != "" || j.hash != nil {
		return v, errors.New("a PDF with a document time-stamp holds its own signature: give the PDF alone")
	}
	pdf, err := readFileLimited(j.sig, maxPDFSize)
	if err != nil {
		return v, fmt.Errorf("cannot read %s: %v", j.sig, err)
	}
	stamps, err := pdfts.Find(pdf)
	if err != nil {
		return v, fmt.Errorf("%s: %s", j.sig, strings.TrimPrefix(err.Error(), "pdfts: "))
	}
	var stamp *pdfts.Stamp
	for i := range stamps {
		if stamps[i].DocTimeStamp {
			stamp = &stamps[i]
		}
	}
	if stamp == nil {
		return v, fmt.Errorf("%s has no RFC 3161 document time-stamp (/SubFilter /ETSI.RFC3161) and no signature beside it", j.sig)
	}
	tok, err := tsp.ParseToken(stamp.Contents)
	if err != nil {
		return v, fmt.Errorf("%s: the document time-stamp is not a valid time-stamp token: %s", j.sig, strings.TrimPrefix(err.Error(), "tsp: "))
	}
	imp, err := tok.Imprint()
	if err != nil {
		return v, fmt.Errorf("%s: %s", j.sig, strings.TrimPrefix(err.Error(), "tsp: "))
	}
	h, err := imp.Alg().New()
	if err != nil {
		return v, fmt.Errorf("%s: the time-stamp's hash: %s", j.sig, trimPkg(err))
	}
	if j.hash, err = ksi.NewImprint(imp.Alg(), stamp.Hash(pdf, h)); err != nil {
		return v, err
	}
	covered := stamp.ByteRange[1] + stamp.ByteRange[3]
	v.Document = fmt.Sprintf("%s: the %d bytes the document time-stamp covers", j.sig, covered)
	if !stamp.WholeFile {
		v.Document = fmt.Sprintf("%s: the %d bytes the newest document time-stamp covers (the file has %d: what was added after it is not covered)",
			j.sig, covered, len(pdf))
	}
	v, err = verifyToken(ctx, j, stamp.Contents, nil, p, opts, roots, v)
	v.byHash = false
	return v, err
}
