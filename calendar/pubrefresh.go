package calendar

import (
	"bytes"
	"crypto/x509"
	"slices"

	"github.com/smallstep/pkcs7"

	"github.com/tempel-ksi/tempel/ksi"
)

// publisherCertificate is a signer that names the certificate it signs
// publications files with.
type publisherCertificate interface {
	PublisherCertificate() *x509.Certificate
}

// staleFile says why a stored publications file no longer fits the
// signer, or "" when it does: its calendar certificates are not the
// signer's (a calendar key was rotated: signatures by the new key would
// not verify key-based until the next publication), or another publisher
// certificate signed it (the publisher's was renewed). A file that does
// not parse is left to the checks that serve it.
func staleFile(file []byte, s PublicationsSigner) string {
	pf, err := ksi.ParsePublicationsFile(file)
	if err != nil {
		return ""
	}
	have := slices.Clone(pf.Certificates)
	want := certificateRecords(s)
	byID := func(a, b ksi.CertificateRecord) int { return bytes.Compare(a.ID, b.ID) }
	slices.SortFunc(have, byID)
	slices.SortFunc(want, byID)
	if !slices.EqualFunc(have, want, func(a, b ksi.CertificateRecord) bool {
		return bytes.Equal(a.ID, b.ID) && bytes.Equal(a.DER, b.DER)
	}) {
		return "its calendar certificates are not the current ones"
	}
	pc, ok := s.(publisherCertificate)
	if !ok {
		return ""
	}
	p7, err := pkcs7.Parse(pf.Signature)
	if err != nil {
		return ""
	}
	if signer := p7.GetOnlySigner(); signer != nil && !signer.Equal(pc.PublisherCertificate()) {
		return "another publisher certificate signed it"
	}
	return ""
}
