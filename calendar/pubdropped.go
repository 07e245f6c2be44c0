package calendar

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tempel-ksi/tempel/ksi"
)

// rootIssued is a signer that tells whether a certificate chains to the
// root verifiers pin with its files.
type rootIssued interface {
	IssuedByRoot(c *x509.Certificate) bool
}

// checkDropped refuses a signer whose publications files would no longer
// carry a calendar certificate the stored file carries, by its id,
// although the certificate chains to the signer's root: every signature
// not yet extended under it would turn from verified to inconclusive for
// whoever fetches the next file. That is a retired-certificates file or a
// members file left out at a restart. Certificates of another root (a
// new PKI) are dropped on purpose and pass.
func checkDropped(file []byte, s PublicationsSigner) error {
	ri, ok := s.(rootIssued)
	if !ok || file == nil {
		return nil
	}
	pf, err := ksi.ParsePublicationsFile(file)
	if err != nil {
		return nil // left to the checks that serve it
	}
	want := certificateRecords(s)
	var lost []string
	for _, have := range pf.Certificates {
		if slices.ContainsFunc(want, func(r ksi.CertificateRecord) bool { return bytes.Equal(r.ID, have.ID) }) {
			continue
		}
		c, err := x509.ParseCertificate(have.DER)
		if err != nil || !ri.IssuedByRoot(c) {
			continue
		}
		lost = append(lost, fmt.Sprintf("%X (%s, valid to %s)", have.ID, c.Subject, c.NotAfter.UTC().Format(time.RFC3339)))
	}
	if len(lost) == 0 {
		return nil
	}
	return fmt.Errorf("calendar: the stored publications file carries calendar certificate %s, which the configured keys would drop: signatures made under it would stop verifying key-based; "+
		"give the retired certificates (serve --retired-certs FILE, written by `tempel keys retire` or `tempel keys rotate`; a key directory's keys/retired-calendar.pem) or the members file that has it",
		strings.Join(lost, ", "))
}
