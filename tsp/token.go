package tsp

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/tempel-ksi/tempel/ksi"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// MaxTokenSize bounds a token or response: certificates and an extended
// KSI signature are a few KiB each.
const MaxTokenSize = 1 << 20

// maxCerts bounds the certificates read from a token.
const maxCerts = 16

// ErrFormat is wrapped by every error about a malformed token or response.
var ErrFormat = errors.New("tsp: malformed token")

func formatErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrFormat, fmt.Sprintf(format, args...))
}

// Token is a parsed time-stamp token (a ContentInfo holding a SignedData
// over a TSTInfo).
type Token struct {
	// Raw is the token's DER (the ContentInfo), also when it was read
	// from a response.
	Raw []byte

	// TSTInfo fields.
	Policy   asn1.ObjectIdentifier
	HashOID  asn1.ObjectIdentifier
	Digest   []byte // the hashedMessage
	Serial   *big.Int
	GenTime  time.Time
	Accuracy time.Duration // 0 when absent
	Nonce    []byte        // INTEGER content, nil when absent

	// TSTInfo is the DER the signed attributes' messageDigest covers.
	TSTInfo []byte
	// SignedAttrs are the signed attributes in their SET OF form (tag
	// 0x31): what the TSA key signed.
	SignedAttrs []byte
	// SignerInfo fields.
	DigestAlg    asn1.ObjectIdentifier
	SignatureAlg asn1.ObjectIdentifier
	Signature    []byte
	SignerIssuer []byte // DER Name
	SignerSerial *big.Int
	Certificates []*x509.Certificate
	// KSISignature is the embedded .ksig, nil when the token has none.
	KSISignature []byte

	messageDigest []byte
	contentType   bool   // the contentType attribute, id-ct-TSTInfo, is there
	certID        []byte // first ESSCertID(v2) hash
	certIDHash    asn1.ObjectIdentifier
	sdHead        []byte   // SignedData fields before signerInfos
	siHead        []byte   // SignerInfo fields before unsignedAttrs
	unsigned      [][]byte // unsigned attributes other than ours
	status        []byte   // the response's PKIStatusInfo, nil for a bare token
}

// Imprint returns the message imprint as a KSI imprint; an error when its
// hash algorithm is not one of KSI's.
func (t *Token) Imprint() (ksi.Imprint, error) {
	alg, ok := hashAlgOf(t.HashOID)
	if !ok || len(t.Digest) != alg.Size() {
		return nil, fmt.Errorf("tsp: message imprint algorithm %s has no KSI equivalent", t.HashOID)
	}
	return append(ksi.Imprint{byte(alg)}, t.Digest...), nil
}

// ParseResponse decodes a TimeStampResp. A response without a token
// (rejection, waiting) gives a *Failure with its status text.
func ParseResponse(der []byte) (*Token, error) {
	if len(der) > MaxTokenSize {
		return nil, formatErr("response of %d bytes exceeds %d", len(der), MaxTokenSize)
	}
	in := cryptobyte.String(der)
	var body, status cryptobyte.String
	if !in.ReadASN1(&body, cbasn1.SEQUENCE) || !in.Empty() || !body.ReadASN1Element(&status, cbasn1.SEQUENCE) {
		return nil, formatErr("not a DER TimeStampResp")
	}
	statusRaw := []byte(status)
	var st cryptobyte.String
	var code int64
	if !status.ReadASN1(&st, cbasn1.SEQUENCE) || !st.ReadASN1Int64WithTag(&code, cbasn1.INTEGER) {
		return nil, formatErr("bad PKIStatusInfo")
	}
	if code != statusGranted && code != statusGrantedWithMods {
		return nil, readFailure(code, st)
	}
	if body.Empty() {
		return nil, formatErr("status granted without a token")
	}
	var tok cryptobyte.String
	if !body.ReadASN1Element(&tok, cbasn1.SEQUENCE) || !body.Empty() {
		return nil, formatErr("bad timeStampToken")
	}
	t, err := ParseToken(tok)
	if err != nil {
		return nil, err
	}
	t.status = statusRaw
	return t, nil
}

func readFailure(code int64, st cryptobyte.String) *Failure {
	f := &Failure{Info: SystemFailure, Text: fmt.Sprintf("status %d", code)}
	if st.PeekASN1Tag(cbasn1.SEQUENCE) {
		var texts cryptobyte.String
		var s cryptobyte.String
		if st.ReadASN1(&texts, cbasn1.SEQUENCE) && texts.ReadASN1(&s, cbasn1.UTF8String) {
			f.Text += ": " + string(s)
		}
	}
	var bits asn1.BitString
	if st.PeekASN1Tag(cbasn1.BIT_STRING) && st.ReadASN1BitString(&bits) {
		for i := range bits.BitLength {
			if bits.At(i) == 1 {
				f.Info = FailureInfo(i)
				break
			}
		}
	}
	return f
}

// Parse decodes either a TimeStampResp (a .tsr) or a bare token (a .tst),
// telling them apart by the first field: a response starts with its
// PKIStatusInfo (a SEQUENCE), a token with its content type (an OID).
func Parse(der []byte) (*Token, error) {
	in := cryptobyte.String(der)
	var body cryptobyte.String
	if in.ReadASN1(&body, cbasn1.SEQUENCE) && body.PeekASN1Tag(cbasn1.SEQUENCE) {
		return ParseResponse(der)
	}
	return ParseToken(der)
}

// IsResponse reports whether the token was read from a TimeStampResp.
func (t *Token) IsResponse() bool { return t.status != nil }

// ParseToken decodes a time-stamp token (DER ContentInfo).
func ParseToken(der []byte) (*Token, error) {
	if len(der) > MaxTokenSize {
		return nil, formatErr("token of %d bytes exceeds %d", len(der), MaxTokenSize)
	}
	in := cryptobyte.String(der)
	var ci, sdWrap, sd cryptobyte.String
	var ct asn1.ObjectIdentifier
	if !in.ReadASN1(&ci, cbasn1.SEQUENCE) || !in.Empty() ||
		!ci.ReadASN1ObjectIdentifier(&ct) || !ct.Equal(oidSignedData) ||
		!ci.ReadASN1(&sdWrap, tagExplicit0) || !ci.Empty() ||
		!sdWrap.ReadASN1(&sd, cbasn1.SEQUENCE) || !sdWrap.Empty() {
		return nil, formatErr("not a ContentInfo with SignedData")
	}
	t := &Token{Raw: der}
	start := sd
	var version int64
	var digestAlgs, eci cryptobyte.String
	var eType asn1.ObjectIdentifier
	if !sd.ReadASN1Int64WithTag(&version, cbasn1.INTEGER) || !sd.ReadASN1(&digestAlgs, cbasn1.SET) ||
		!sd.ReadASN1(&eci, cbasn1.SEQUENCE) || !eci.ReadASN1ObjectIdentifier(&eType) {
		return nil, formatErr("bad SignedData")
	}
	if !eType.Equal(oidTSTInfo) {
		return nil, formatErr("content type %s, want TSTInfo", eType)
	}
	var eWrap, eContent cryptobyte.String
	if !eci.ReadASN1(&eWrap, tagExplicit0) || !eWrap.ReadASN1(&eContent, cbasn1.OCTET_STRING) || !eWrap.Empty() || !eci.Empty() {
		return nil, formatErr("bad encapsulated TSTInfo")
	}
	t.TSTInfo = eContent
	if err := t.parseTSTInfo(eContent); err != nil {
		return nil, err
	}
	if sd.PeekASN1Tag(tagImplicit0) {
		var certs cryptobyte.String
		if !sd.ReadASN1(&certs, tagImplicit0) {
			return nil, formatErr("bad certificates")
		}
		for !certs.Empty() {
			var c cryptobyte.String
			if len(t.Certificates) == maxCerts || !certs.ReadASN1Element(&c, cbasn1.SEQUENCE) {
				return nil, formatErr("bad or too many certificates")
			}
			cert, err := x509.ParseCertificate(c)
			if err != nil {
				return nil, formatErr("certificate: %v", err)
			}
			t.Certificates = append(t.Certificates, cert)
		}
	}
	if sd.PeekASN1Tag(tagImplicit1) {
		var crls cryptobyte.String
		if !sd.ReadASN1(&crls, tagImplicit1) {
			return nil, formatErr("bad crls")
		}
	}
	t.sdHead = start[:len(start)-len(sd)]
	var infos, si cryptobyte.String
	if !sd.ReadASN1(&infos, cbasn1.SET) || !sd.Empty() || !infos.ReadASN1(&si, cbasn1.SEQUENCE) {
		return nil, formatErr("bad signerInfos")
	}
	if !infos.Empty() {
		return nil, formatErr("more than one SignerInfo")
	}
	if err := t.parseSignerInfo(si); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *Token) parseTSTInfo(b cryptobyte.String) error {
	var body, mi, digest, serial cryptobyte.String
	var version int64
	if !b.ReadASN1(&body, cbasn1.SEQUENCE) || !b.Empty() ||
		!body.ReadASN1Int64WithTag(&version, cbasn1.INTEGER) || version != 1 ||
		!body.ReadASN1ObjectIdentifier(&t.Policy) ||
		!body.ReadASN1(&mi, cbasn1.SEQUENCE) {
		return formatErr("bad TSTInfo")
	}
	var ok bool
	if t.HashOID, _, ok = readAlgID(&mi); !ok || !mi.ReadASN1(&digest, cbasn1.OCTET_STRING) || !mi.Empty() {
		return formatErr("bad TSTInfo message imprint")
	}
	t.Digest = digest
	if !body.ReadASN1(&serial, cbasn1.INTEGER) || len(serial) == 0 {
		return formatErr("bad TSTInfo serial number")
	}
	t.Serial = new(big.Int).SetBytes(serial)
	if serial[0]&0x80 != 0 {
		return formatErr("negative TSTInfo serial number")
	}
	var gt cryptobyte.String
	if !body.ReadASN1(&gt, cbasn1.GeneralizedTime) {
		return formatErr("bad genTime")
	}
	// Other TSAs add fractions of a second; time.Parse reads them after
	// the seconds field.
	g, err := time.Parse("20060102150405Z0700", string(gt))
	if err != nil {
		return formatErr("genTime: %v", err)
	}
	t.GenTime = g.UTC()
	if body.PeekASN1Tag(cbasn1.SEQUENCE) {
		var acc cryptobyte.String
		if !body.ReadASN1(&acc, cbasn1.SEQUENCE) {
			return formatErr("bad accuracy")
		}
		var sec, ms, us int64
		if acc.PeekASN1Tag(cbasn1.INTEGER) && !acc.ReadASN1Int64WithTag(&sec, cbasn1.INTEGER) {
			return formatErr("bad accuracy seconds")
		}
		if acc.PeekASN1Tag(cbasn1.Tag(0).ContextSpecific()) && !acc.ReadASN1Int64WithTag(&ms, cbasn1.Tag(0).ContextSpecific()) {
			return formatErr("bad accuracy millis")
		}
		if acc.PeekASN1Tag(cbasn1.Tag(1).ContextSpecific()) && !acc.ReadASN1Int64WithTag(&us, cbasn1.Tag(1).ContextSpecific()) {
			return formatErr("bad accuracy micros")
		}
		if sec < 0 || sec > 1<<30 || ms < 0 || ms > 999 || us < 0 || us > 999 {
			return formatErr("accuracy out of range")
		}
		t.Accuracy = time.Duration(sec)*time.Second + time.Duration(ms)*time.Millisecond + time.Duration(us)*time.Microsecond
	}
	if body.PeekASN1Tag(cbasn1.BOOLEAN) {
		var ord cryptobyte.String
		if !body.ReadASN1(&ord, cbasn1.BOOLEAN) {
			return formatErr("bad ordering")
		}
	}
	if body.PeekASN1Tag(cbasn1.INTEGER) {
		var n cryptobyte.String
		if !body.ReadASN1(&n, cbasn1.INTEGER) || len(n) == 0 {
			return formatErr("bad nonce")
		}
		t.Nonce = n
	}
	// tsa [0] and extensions [1] are not needed to verify.
	return nil
}

func (t *Token) parseSignerInfo(si cryptobyte.String) error {
	start := si
	var version int64
	var sid, attrs, sig cryptobyte.String
	if !si.ReadASN1Int64WithTag(&version, cbasn1.INTEGER) || !si.ReadASN1(&sid, cbasn1.SEQUENCE) {
		return formatErr("bad SignerInfo (only issuerAndSerialNumber is read)")
	}
	var serial cryptobyte.String
	var issuer cryptobyte.String
	if !sid.ReadASN1Element(&issuer, cbasn1.SEQUENCE) || !sid.ReadASN1(&serial, cbasn1.INTEGER) || !sid.Empty() || len(serial) == 0 {
		return formatErr("bad issuerAndSerialNumber")
	}
	t.SignerIssuer = issuer
	t.SignerSerial = new(big.Int).SetBytes(serial)
	var ok bool
	if t.DigestAlg, _, ok = readAlgID(&si); !ok {
		return formatErr("bad SignerInfo digest algorithm")
	}
	var attrsFull cryptobyte.String
	if !si.ReadASN1Element(&attrsFull, tagImplicit0) || !attrsFull.ReadASN1(&attrs, tagImplicit0) {
		return formatErr("a time-stamp token needs signed attributes")
	}
	// The key signed the attributes as a SET OF: the same content under
	// the SET tag.
	t.SignedAttrs = appendHeader(make([]byte, 0, len(attrs)+4), 0x31, len(attrs))
	t.SignedAttrs = append(t.SignedAttrs, attrs...)
	if err := t.parseSignedAttrs(attrs); err != nil {
		return err
	}
	if t.SignatureAlg, _, ok = readAlgID(&si); !ok {
		return formatErr("bad SignerInfo signature algorithm")
	}
	if !si.ReadASN1(&sig, cbasn1.OCTET_STRING) {
		return formatErr("bad SignerInfo signature")
	}
	t.Signature = sig
	t.siHead = start[:len(start)-len(si)]
	if si.Empty() {
		return nil
	}
	var unsigned cryptobyte.String
	if !si.ReadASN1(&unsigned, tagImplicit1) || !si.Empty() {
		return formatErr("bad unsigned attributes")
	}
	for !unsigned.Empty() {
		var a, body, oid cryptobyte.String
		if !unsigned.ReadASN1Element(&a, cbasn1.SEQUENCE) {
			return formatErr("bad unsigned attribute")
		}
		whole := a
		if !a.ReadASN1(&body, cbasn1.SEQUENCE) || !body.ReadASN1(&oid, cbasn1.OBJECT_IDENTIFIER) {
			return formatErr("bad unsigned attribute")
		}
		if !bytes.Equal(oid, oidKSIContent) {
			t.unsigned = append(t.unsigned, whole)
			continue
		}
		var set, ksig cryptobyte.String
		if t.KSISignature != nil || !body.ReadASN1(&set, cbasn1.SET) || !set.ReadASN1(&ksig, cbasn1.OCTET_STRING) || !set.Empty() || !body.Empty() {
			return formatErr("bad KSI signature attribute")
		}
		t.KSISignature = ksig
	}
	return nil
}

func (t *Token) parseSignedAttrs(attrs cryptobyte.String) error {
	for !attrs.Empty() {
		var a, set cryptobyte.String
		var oid asn1.ObjectIdentifier
		if !attrs.ReadASN1(&a, cbasn1.SEQUENCE) || !a.ReadASN1ObjectIdentifier(&oid) || !a.ReadASN1(&set, cbasn1.SET) || !a.Empty() {
			return formatErr("bad signed attribute")
		}
		switch {
		case oid.Equal(oidMessageDigest):
			var d cryptobyte.String
			if t.messageDigest != nil || !set.ReadASN1(&d, cbasn1.OCTET_STRING) || !set.Empty() {
				return formatErr("bad messageDigest attribute")
			}
			t.messageDigest = d
		case oid.Equal(oidContentType):
			var ct asn1.ObjectIdentifier
			if t.contentType || !set.ReadASN1ObjectIdentifier(&ct) || !set.Empty() || !ct.Equal(oidTSTInfo) {
				return formatErr("contentType attribute is not TSTInfo")
			}
			t.contentType = true
		case oid.Equal(oidSigningCertV2), oid.Equal(oidSigningCert):
			if err := t.readCertID(set, oid.Equal(oidSigningCertV2)); err != nil {
				return err
			}
		}
	}
	if t.messageDigest == nil {
		return formatErr("no messageDigest attribute")
	}
	return nil
}

// readCertID reads the first ESSCertID(v2): the hash naming the signer's
// certificate.
func (t *Token) readCertID(set cryptobyte.String, v2 bool) error {
	var sc, certs, id, hash cryptobyte.String
	if t.certID != nil || !set.ReadASN1(&sc, cbasn1.SEQUENCE) || !sc.ReadASN1(&certs, cbasn1.SEQUENCE) || !certs.ReadASN1(&id, cbasn1.SEQUENCE) {
		return formatErr("bad signing certificate attribute")
	}
	t.certIDHash = oidSHA1
	if v2 {
		t.certIDHash = oidSHA256
		if id.PeekASN1Tag(cbasn1.SEQUENCE) {
			var ok bool
			if t.certIDHash, _, ok = readAlgID(&id); !ok {
				return formatErr("bad ESSCertIDv2 hash algorithm")
			}
		}
	}
	if !id.ReadASN1(&hash, cbasn1.OCTET_STRING) {
		return formatErr("bad ESSCertID hash")
	}
	t.certID = hash
	return nil
}
