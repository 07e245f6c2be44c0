package verifier

import (
	"crypto"
	"crypto/x509"
	"time"

	"github.com/tempel-ksi/tempel/ksi"
)

// keyBased checks the calendar authentication record's PKI signature
// against the certificates of the publications file.
func (c *checker) keyBased() bool {
	s := c.sig
	cal := s.CalendarChain
	if cal == nil {
		return c.na("CalendarChainPresent", "the signature has no calendar chain")
	}
	if ok, a := calendarAlgsUsable(cal); !ok {
		return c.na("CalendarChainAlgorithms", "calendar chain uses %s, deprecated at %d", a, cal.PublicationTime)
	}
	ar := s.CalendarAuthRecord
	if ar == nil {
		return c.na("CalendarAuthRecordPresent", "the signature has no calendar authentication record")
	}
	pf := c.opts.PublicationsFile
	if pf == nil {
		return c.na("CertificateExistence", "no publications file to look up certificate %X", ar.SignatureData.CertificateID)
	}
	rec := pf.CertificateByID(ar.SignatureData.CertificateID)
	if rec == nil {
		return c.na("CertificateExistence", "certificate %X is not in the publications file", ar.SignatureData.CertificateID)
	}
	cert, err := x509.ParseCertificate(rec.DER)
	if err != nil {
		return c.na("CertificateExistence", "certificate %X cannot be read: %v", ar.SignatureData.CertificateID, err)
	}
	at := time.Unix(int64(ar.PublishedData.Time), 0)
	if at.Before(cert.NotBefore) || at.After(cert.NotAfter) {
		return c.fail("CertificateValidity", KEY03, "certificate %X is valid %s to %s, signed at %s",
			ar.SignatureData.CertificateID, cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339), at.UTC().Format(time.RFC3339))
	}
	alg, ok := signatureAlgorithms[ar.SignatureData.Type]
	if !ok {
		return c.fail("CalendarAuthRecordSignature", KEY02, "signature type %q is not a known signature algorithm", ar.SignatureData.Type)
	}
	if err := cert.CheckSignature(alg, ar.PublishedData.Raw, ar.SignatureData.Value); err != nil {
		return c.fail("CalendarAuthRecordSignature", KEY02, "%v", err)
	}
	c.rep.Anchor = "calendar authentication record (certificate " + SubjectString(cert.Subject) + ")"
	return c.ok("CalendarAuthRecordSignature")
}

// signatureAlgorithms maps the OIDs a calendar authentication record may
// name to Go's signature algorithms.
var signatureAlgorithms = map[string]x509.SignatureAlgorithm{
	"1.2.840.113549.1.1.5":  x509.SHA1WithRSA,
	"1.2.840.113549.1.1.11": x509.SHA256WithRSA,
	"1.2.840.113549.1.1.12": x509.SHA384WithRSA,
	"1.2.840.113549.1.1.13": x509.SHA512WithRSA,
	"1.2.840.10045.4.3.2":   x509.ECDSAWithSHA256,
	"1.2.840.10045.4.3.3":   x509.ECDSAWithSHA384,
	"1.2.840.10045.4.3.4":   x509.ECDSAWithSHA512,
}

// SignatureAlgorithmOID is the signature type Tempel writes into calendar
// authentication records (sha256WithRSAEncryption).
const SignatureAlgorithmOID = "1.2.840.113549.1.1.11"

// SignatureHash is the digest of SignatureAlgorithmOID.
const SignatureHash = crypto.SHA256

// publicationsFile checks the signature against a trusted publications
// file, extending it to a suitable publication when needed.
func (c *checker) publicationsFile() bool {
	s := c.sig
	pf := c.opts.PublicationsFile
	if pf == nil {
		return c.na("PublicationsFilePresent", "no publications file")
	}
	if pr := s.PublicationRecord; pr != nil {
		if rec := pf.PublicationAt(pr.Data.Time); rec != nil {
			if !rec.Data.Hash.Equal(pr.Data.Hash) {
				return c.fail("PublicationsFilePublicationHash", PUB05, "publication of %s", pr.Data.UTC().Format(time.RFC3339))
			}
			if ok, a := calendarAlgsUsable(s.CalendarChain); !ok {
				return c.na("CalendarChainAlgorithms", "calendar chain uses %s, deprecated at %d", a, s.CalendarChain.PublicationTime)
			}
			c.rep.Anchor = "publications file (publication " + pr.Data.String() + ")"
			return c.ok("PublicationsFilePublication")
		}
	}
	rec := pf.FirstPublicationAfter(s.SigningTime())
	if rec == nil {
		return c.na("SuitablePublication", "the publications file has no publication after %s", s.SigningUTC().Format(time.RFC3339))
	}
	if !c.extendTo(rec.Data) {
		return false
	}
	c.rep.Anchor = "publications file (publication " + rec.Data.String() + ", by extending)"
	return true
}

// userPublication checks the signature against a publication the user
// trusts (a publication string from print).
func (c *checker) userPublication() bool {
	s := c.sig
	up := c.opts.UserPublication
	if up == nil {
		return c.na("UserPublicationPresent", "no user publication given")
	}
	if pr := s.PublicationRecord; pr != nil && pr.Data.Time == up.Time {
		if !pr.Data.Hash.Equal(up.Hash) {
			return c.fail("UserPublicationHash", PUB04, "publication of %s", up.UTC().Format(time.RFC3339))
		}
		if ok, a := calendarAlgsUsable(s.CalendarChain); !ok {
			return c.na("CalendarChainAlgorithms", "calendar chain uses %s, deprecated at %d", a, s.CalendarChain.PublicationTime)
		}
		c.rep.Anchor = "user publication " + up.String()
		return c.ok("UserPublication")
	}
	if s.SigningTime() >= up.Time {
		return c.na("UserPublicationTime", "the signature (%s) is not older than the publication (%s)",
			s.SigningUTC().Format(time.RFC3339), up.UTC().Format(time.RFC3339))
	}
	if !c.extendTo(*up) {
		return false
	}
	c.rep.Anchor = "user publication " + up.String() + " (by extending)"
	return true
}

// extendTo asks the extender for the calendar chain from the signature's
// leaf to pub and checks it against pub and the signature (PUB-01..03).
func (c *checker) extendTo(pub ksi.PublishedData) bool {
	if c.opts.Extender == nil || !c.opts.ExtendingAllowed {
		return c.na("ExtendingPermitted", "extending to the publication of %s is not permitted", pub.UTC().Format(time.RFC3339))
	}
	ch, err := c.extend(pub.Time)
	if err != nil {
		return c.na("ExtendSignature", "extending failed: %v", err)
	}
	if ok, a := calendarAlgsUsable(ch); !ok {
		return c.na("ExtendedCalendarChainAlgorithms", "extended calendar chain uses %s, deprecated at %d", a, ch.PublicationTime)
	}
	out, err := ch.Output(c.h)
	if err != nil {
		return c.na("ExtendedCalendarChainOutput", "%v", err)
	}
	if !out.Equal(pub.Hash) {
		return c.fail("ExtendedCalendarChainRoot", PUB01, "")
	}
	t, err := ch.AggregationTimeFromShape()
	if err != nil || ch.PublicationTime != pub.Time || t != c.sig.SigningTime() || ch.AggregationTime != c.sig.SigningTime() {
		return c.fail("ExtendedCalendarChainTime", PUB02, "chain for %d at %d, signature signed at %d", ch.AggregationTime, ch.PublicationTime, c.sig.SigningTime())
	}
	if !ch.InputHash.Equal(c.aggrOut.Hash) {
		return c.fail("ExtendedCalendarChainInput", PUB03, "")
	}
	return c.ok("ExtendedCalendarChain")
}

// calendar compares the signature with the calendar, through the extender.
func (c *checker) calendar() bool {
	s := c.sig
	if c.opts.Extender == nil {
		return c.na("ExtenderPresent", "no extender to ask the calendar")
	}
	cal := s.CalendarChain
	var pubTime uint64
	if cal != nil {
		pubTime = cal.PublicationTime
	}
	ch, err := c.extend(pubTime)
	if err != nil {
		return c.na("ExtendSignature", "asking the calendar failed: %v", err)
	}
	if cal != nil {
		if s.PublicationRecord != nil {
			out, err := ch.Output(c.h)
			if err != nil {
				return c.na("CalendarDatabaseChainOutput", "%v", err)
			}
			if !out.Equal(c.calOut) {
				return c.fail("CalendarDatabaseRoot", CAL01, "")
			}
		} else if !ksi.RightLinksEqual(cal.Links, ch.Links) {
			return c.fail("CalendarDatabaseRightLinks", CAL04, "")
		}
	}
	if !ch.InputHash.Equal(c.aggrOut.Hash) {
		return c.fail("CalendarDatabaseInput", CAL02, "")
	}
	if ch.AggregationTime != s.SigningTime() {
		return c.fail("CalendarDatabaseAggregationTime", CAL03, "calendar %d, signature %d", ch.AggregationTime, s.SigningTime())
	}
	c.rep.Anchor = "calendar (extender)"
	return c.ok("CalendarDatabase")
}
