package tsp

import (
	"encoding/asn1"
	"fmt"

	"github.com/tempel-ksi/tempel/ksi"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// MaxRequestSize bounds a TimeStampReq. Real requests are under 200
// bytes (a SHA-512 imprint, a policy and a nonce); anything near the
// bound is not a time-stamp request.
const MaxRequestSize = 16 << 10

// maxNonceLen bounds the nonce echoed into the token. RFC 3161 asks for
// about 64 bits; clients send 8 to 32 bytes.
const maxNonceLen = 64

// FailureInfo is a PKIFailureInfo bit (RFC 3161 §2.4.2).
type FailureInfo int

// The PKIFailureInfo bits a TSA answers with.
const (
	BadAlg              FailureInfo = 0
	BadRequest          FailureInfo = 2
	BadDataFormat       FailureInfo = 5
	TimeNotAvailable    FailureInfo = 14
	UnacceptedPolicy    FailureInfo = 15
	UnacceptedExtension FailureInfo = 16
	AddInfoNotAvailable FailureInfo = 17
	SystemFailure       FailureInfo = 25
)

func (f FailureInfo) String() string {
	switch f {
	case BadAlg:
		return "badAlg"
	case BadRequest:
		return "badRequest"
	case BadDataFormat:
		return "badDataFormat"
	case TimeNotAvailable:
		return "timeNotAvailable"
	case UnacceptedPolicy:
		return "unacceptedPolicy"
	case UnacceptedExtension:
		return "unacceptedExtension"
	case AddInfoNotAvailable:
		return "addInfoNotAvailable"
	case SystemFailure:
		return "systemFailure"
	}
	return fmt.Sprintf("failureInfo(%d)", int(f))
}

// Failure is a request the TSA refuses: what goes into a rejection.
type Failure struct {
	Info FailureInfo
	Text string
}

func (f *Failure) Error() string { return "tsp: " + f.Info.String() + ": " + f.Text }

func fail(info FailureInfo, format string, args ...any) *Failure {
	return &Failure{Info: info, Text: fmt.Sprintf(format, args...)}
}

// Request is a parsed TimeStampReq.
type Request struct {
	// Imprint is the message imprint as a KSI imprint: the hash
	// algorithm's KSI id followed by the hashed message.
	Imprint ksi.Imprint
	// HashAlgID is the request's AlgorithmIdentifier as received; the
	// token echoes it.
	HashAlgID []byte
	// Policy is the requested policy, nil for none.
	Policy asn1.ObjectIdentifier
	// Nonce is the content of the nonce INTEGER exactly as received
	// (it may be negative or not minimally encoded), nil for none.
	Nonce []byte
	// CertReq asks for the TSA certificate in the token.
	CertReq bool
}

var tagExtensions = cbasn1.Tag(0).ContextSpecific().Constructed()

// ParseRequest decodes a DER TimeStampReq (RFC 3161 §2.4.1). Every error
// is a *Failure naming the PKIFailureInfo to answer with.
func ParseRequest(der []byte) (*Request, error) {
	if len(der) > MaxRequestSize {
		return nil, fail(BadDataFormat, "request of %d bytes exceeds %d", len(der), MaxRequestSize)
	}
	in := cryptobyte.String(der)
	var body cryptobyte.String
	if !in.ReadASN1(&body, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, fail(BadDataFormat, "not a DER TimeStampReq")
	}
	var version int64
	if !body.ReadASN1Int64WithTag(&version, cbasn1.INTEGER) {
		return nil, fail(BadDataFormat, "bad version")
	}
	if version != 1 {
		return nil, fail(BadRequest, "version %d, only 1 is defined", version)
	}
	r := &Request{}
	if err := r.readImprint(&body); err != nil {
		return nil, err
	}
	if body.PeekASN1Tag(cbasn1.OBJECT_IDENTIFIER) {
		if !body.ReadASN1ObjectIdentifier(&r.Policy) {
			return nil, fail(BadDataFormat, "bad reqPolicy")
		}
	}
	if body.PeekASN1Tag(cbasn1.INTEGER) {
		var n cryptobyte.String
		if !body.ReadASN1(&n, cbasn1.INTEGER) || len(n) == 0 {
			return nil, fail(BadDataFormat, "bad nonce")
		}
		if len(n) > maxNonceLen {
			return nil, fail(BadDataFormat, "nonce of %d bytes exceeds %d", len(n), maxNonceLen)
		}
		r.Nonce = n
	}
	if body.PeekASN1Tag(cbasn1.BOOLEAN) {
		// BER allows any non-zero byte for TRUE, and zgapdfsigner sends 0x31.
		var b cryptobyte.String
		if !body.ReadASN1(&b, cbasn1.BOOLEAN) || len(b) != 1 {
			return nil, fail(BadDataFormat, "bad certReq")
		}
		r.CertReq = b[0] != 0
	}
	if body.PeekASN1Tag(tagExtensions) {
		return nil, fail(UnacceptedExtension, "request extensions are not supported")
	}
	if !body.Empty() {
		return nil, fail(BadDataFormat, "unexpected data after the request fields")
	}
	return r, nil
}

func (r *Request) readImprint(body *cryptobyte.String) error {
	var mi cryptobyte.String
	if !body.ReadASN1(&mi, cbasn1.SEQUENCE) {
		return fail(BadDataFormat, "bad messageImprint")
	}
	oid, raw, ok := readAlgID(&mi)
	if !ok {
		return fail(BadDataFormat, "bad messageImprint hash algorithm")
	}
	var digest cryptobyte.String
	if !mi.ReadASN1(&digest, cbasn1.OCTET_STRING) || !mi.Empty() {
		return fail(BadDataFormat, "bad messageImprint hashedMessage")
	}
	alg, ok := hashAlgOf(oid)
	if !ok {
		if oid.Equal(oidSHA1) {
			return fail(BadAlg, "SHA-1 is deprecated; use SHA-256 or stronger")
		}
		return fail(BadAlg, "hash algorithm %s is not supported", oid)
	}
	if len(digest) != alg.Size() {
		return fail(BadDataFormat, "%s hashedMessage of %d bytes, want %d", alg, len(digest), alg.Size())
	}
	r.HashAlgID = raw
	r.Imprint = append(ksi.Imprint{byte(alg)}, digest...)
	return nil
}

// Rejection encodes a TimeStampResp with status rejection, f's text as
// the statusString and f's failure bit.
func Rejection(f *Failure) []byte {
	info := int(f.Info)
	if info < 0 || info > int(SystemFailure) {
		info = int(SystemFailure) // not a PKIFailureInfo bit
	}
	bits := make([]byte, info/8+1)
	bits[info/8] = 0x80 >> (info % 8)
	b := cryptobyte.NewBuilder(make([]byte, 0, 64+len(f.Text)))
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1Int64(statusRejection)
			if f.Text != "" {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.UTF8String, func(b *cryptobyte.Builder) { b.AddBytes([]byte(f.Text)) })
				})
			}
			b.AddASN1(cbasn1.BIT_STRING, func(b *cryptobyte.Builder) {
				b.AddUint8(uint8(7 - info%8))
				b.AddBytes(bits)
			})
		})
	})
	return b.BytesOrPanic()
}

// PKIStatus values (RFC 3161 §2.4.2).
const (
	statusGranted         = 0
	statusGrantedWithMods = 1
	statusRejection       = 2
)
