package ksi

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha3"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"
	"time"

	//lint:ignore SA1019 RIPEMD-160 is one of the KSI hash algorithms: signatures made with it must still verify.
	"golang.org/x/crypto/ripemd160"
)

// HashAlg is a KSI hash algorithm id (docs/design/formats.md#hash-algorithms).
type HashAlg byte

// The hash algorithms of KSI.
const (
	SHA1      HashAlg = 0x00
	SHA2_256  HashAlg = 0x01
	RIPEMD160 HashAlg = 0x02
	SHA2_384  HashAlg = 0x04
	SHA2_512  HashAlg = 0x05
	SHA3_224  HashAlg = 0x07
	SHA3_256  HashAlg = 0x08
	SHA3_384  HashAlg = 0x09
	SHA3_512  HashAlg = 0x0A
	SM3       HashAlg = 0x0B
)

// Reserved ids: 0x03 is never a valid algorithm, so a legacy client id
// (which starts with 0x03) cannot be read as an imprint.
const (
	reservedAlg03 HashAlg = 0x03
	reservedAlg06 HashAlg = 0x06
)

type algInfo struct {
	name           string
	size           int
	deprecatedFrom uint64 // POSIX seconds; 0 = never
	obsoleteFrom   uint64 // POSIX seconds; 0 = never
	newHash        func() hash.Hash
}

// algs is indexed by algorithm id. A zero size marks an unknown id.
var algs = [...]algInfo{
	SHA1:          {"SHA-1", 20, 1467331200, 0, sha1.New},
	SHA2_256:      {"SHA-256", 32, 0, 0, sha256.New},
	RIPEMD160:     {"RIPEMD-160", 20, 0, 0, ripemd160.New},
	reservedAlg03: {"reserved-0x03", 0, 1, 1, nil},
	SHA2_384:      {"SHA-384", 48, 0, 0, sha512.New384},
	SHA2_512:      {"SHA-512", 64, 0, 0, sha512.New},
	reservedAlg06: {"reserved-0x06", 0, 1, 1, nil},
	SHA3_224:      {"SHA3-224", 28, 0, 0, func() hash.Hash { return sha3.New224() }},
	SHA3_256:      {"SHA3-256", 32, 0, 0, func() hash.Hash { return sha3.New256() }},
	SHA3_384:      {"SHA3-384", 48, 0, 0, func() hash.Hash { return sha3.New384() }},
	SHA3_512:      {"SHA3-512", 64, 0, 0, func() hash.Hash { return sha3.New512() }},
	SM3:           {"SM3", 32, 0, 0, nil},
}

// Errors about hash algorithms.
var (
	ErrUnknownAlg     = errors.New("ksi: unknown hash algorithm")
	ErrUnsupportedAlg = errors.New("ksi: hash algorithm not implemented")
)

func (a HashAlg) info() (*algInfo, bool) {
	if int(a) >= len(algs) || algs[a].size == 0 {
		return &algInfo{}, false
	}
	return &algs[a], true
}

// Known reports whether a is a defined algorithm with a digest size.
func (a HashAlg) Known() bool { _, ok := a.info(); return ok }

// Supported reports whether Tempel can compute hashes with a.
func (a HashAlg) Supported() bool { i, ok := a.info(); return ok && i.newHash != nil }

// Size returns the digest length in bytes, or 0 for an unknown algorithm.
func (a HashAlg) Size() int { i, _ := a.info(); return i.size }

// String returns the algorithm's name as the reference tools write it.
func (a HashAlg) String() string {
	if int(a) < len(algs) && algs[a].name != "" {
		return algs[a].name
	}
	return fmt.Sprintf("unknown-0x%02x", byte(a))
}

// DeprecatedFrom returns the time from which a is deprecated (0 = never).
func (a HashAlg) DeprecatedFrom() uint64 {
	if int(a) < len(algs) {
		return algs[a].deprecatedFrom
	}
	return 0
}

// ObsoleteFrom returns the time from which a is obsolete (0 = never).
func (a HashAlg) ObsoleteFrom() uint64 {
	if int(a) < len(algs) {
		return algs[a].obsoleteFrom
	}
	return 0
}

// Obsolete reports whether a is obsolete at POSIX time t.
func (a HashAlg) Obsolete(t uint64) bool {
	o := a.ObsoleteFrom()
	return o != 0 && t >= o
}

// Deprecated reports whether a is deprecated (or obsolete) at POSIX time t.
func (a HashAlg) Deprecated(t uint64) bool {
	d := a.DeprecatedFrom()
	return a.Obsolete(t) || (d != 0 && t >= d)
}

// Trusted reports whether a is known and neither deprecated nor obsolete at t.
func (a HashAlg) Trusted(t uint64) bool { return a.Known() && !a.Deprecated(t) }

// ErrDeprecatedAlg reports a hash algorithm that is deprecated or obsolete
// at the time a new signature would be made.
var ErrDeprecatedAlg = errors.New("ksi: hash algorithm no longer allowed for new signatures")

// CheckSigning reports whether a document hash made with a may be signed
// at POSIX time t: a known algorithm that Tempel implements, neither
// deprecated nor obsolete at t (docs/design/formats.md#hash-algorithms; a verifier fails a signature
// of a hash deprecated at its signing time with INT-13). The error names
// the algorithm and, for a deprecated or obsolete one, the date.
func (a HashAlg) CheckSigning(t uint64) error {
	i, ok := a.info()
	switch {
	case !ok:
		return fmt.Errorf("%w: 0x%02x", ErrUnknownAlg, byte(a))
	case i.newHash == nil:
		return fmt.Errorf("%w: %s", ErrUnsupportedAlg, i.name)
	case a.Obsolete(t):
		return fmt.Errorf("%w: %s is obsolete since %s", ErrDeprecatedAlg, i.name, utcDate(i.obsoleteFrom))
	case a.Deprecated(t):
		return fmt.Errorf("%w: %s is deprecated since %s", ErrDeprecatedAlg, i.name, utcDate(i.deprecatedFrom))
	}
	return nil
}

// utcDate formats POSIX time t as an RFC 3339 UTC date, with the time of
// day when it is not midnight.
func utcDate(t uint64) string {
	d := time.Unix(int64(min(t, 1<<62)), 0).UTC()
	if d.Hour() == 0 && d.Minute() == 0 && d.Second() == 0 {
		return d.Format(time.DateOnly)
	}
	return d.Format(time.RFC3339)
}

// New returns a new hash.Hash computing a.
func (a HashAlg) New() (hash.Hash, error) {
	i, ok := a.info()
	if !ok {
		return nil, fmt.Errorf("%w: 0x%02x", ErrUnknownAlg, byte(a))
	}
	if i.newHash == nil {
		return nil, fmt.Errorf("%w: %s", ErrUnsupportedAlg, i.name)
	}
	return i.newHash(), nil
}

// Digest hashes data with a and returns the imprint.
func (a HashAlg) Digest(data []byte) (Imprint, error) {
	if a == SHA2_256 { // the common case without allocating a hash state
		s := sha256.Sum256(data)
		return append(Imprint{byte(SHA2_256)}, s[:]...), nil
	}
	h, err := a.New()
	if err != nil {
		return nil, err
	}
	h.Write(data)
	return h.Sum(Imprint{byte(a)}), nil
}

// algNames maps the names accepted on command lines to algorithms.
var algNames = map[string]HashAlg{
	"SHA-1": SHA1, "SHA1": SHA1,
	"SHA-256": SHA2_256, "SHA2-256": SHA2_256, "SHA-2": SHA2_256, "SHA2": SHA2_256, "SHA256": SHA2_256, "DEFAULT": SHA2_256,
	"RIPEMD-160": RIPEMD160, "RIPEMD160": RIPEMD160,
	"SHA-384": SHA2_384, "SHA384": SHA2_384, "SHA2-384": SHA2_384,
	"SHA-512": SHA2_512, "SHA512": SHA2_512, "SHA2-512": SHA2_512,
	"SHA3-224": SHA3_224, "SHA3-256": SHA3_256, "SHA3-384": SHA3_384, "SHA3-512": SHA3_512,
	"SM-3": SM3, "SM3": SM3,
}

// ParseHashAlg parses an algorithm name as the reference tools accept it
// (case-insensitive), e.g. "SHA-256" or "sha256".
func ParseHashAlg(name string) (HashAlg, error) {
	if a, ok := algNames[strings.ToUpper(name)]; ok {
		return a, nil
	}
	return 0, fmt.Errorf("%w: %q", ErrUnknownAlg, name)
}

// Imprint is a hash value with its algorithm: one algorithm byte followed
// by the digest. A valid imprint has exactly 1+Size() bytes.
type Imprint []byte

// Errors about imprints.
var ErrBadImprint = errors.New("ksi: malformed imprint")

// ParseImprint validates b as an imprint and returns it (not copied).
func ParseImprint(b []byte) (Imprint, error) {
	if len(b) == 1+sha256.Size && b[0] == byte(SHA2_256) {
		return Imprint(b), nil // nearly every imprint: checked without a call
	}
	return parseImprintSlow(b)
}

func parseImprintSlow(b []byte) (Imprint, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrBadImprint)
	}
	a := HashAlg(b[0])
	if !a.Known() {
		return nil, fmt.Errorf("%w: %w 0x%02x", ErrBadImprint, ErrUnknownAlg, b[0])
	}
	if len(b) != 1+a.Size() {
		return nil, fmt.Errorf("%w: %s digest must be %d bytes, got %d", ErrBadImprint, a, a.Size(), len(b)-1)
	}
	return Imprint(b), nil
}

// NewImprint joins an algorithm and a digest, checking the digest length.
func NewImprint(a HashAlg, digest []byte) (Imprint, error) {
	return ParseImprint(append([]byte{byte(a)}, digest...))
}

// ParseImprintText parses the command-line form "ALG:HEX" (as ksi-tool
// writes it, e.g. "SHA-256:11a7…") or a bare hex imprint ("0111a7…").
func ParseImprintText(s string) (Imprint, error) {
	name, hx, found := strings.Cut(s, ":")
	if !found {
		b, err := hex.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("%w: not hex: %v", ErrBadImprint, err)
		}
		return ParseImprint(b)
	}
	a, err := ParseHashAlg(name)
	if err != nil {
		return nil, err
	}
	d, err := hex.DecodeString(hx)
	if err != nil {
		return nil, fmt.Errorf("%w: digest is not hex: %v", ErrBadImprint, err)
	}
	return NewImprint(a, d)
}

// Alg returns the imprint's algorithm.
func (m Imprint) Alg() HashAlg {
	if len(m) == 0 {
		return reservedAlg03
	}
	return HashAlg(m[0])
}

// Digest returns the digest bytes without the algorithm byte.
func (m Imprint) Digest() []byte {
	if len(m) == 0 {
		return nil
	}
	return m[1:]
}

// Equal reports whether two imprints are identical.
func (m Imprint) Equal(o Imprint) bool { return bytes.Equal(m, o) }

// String returns "ALG:hex", the form the reference tools print.
func (m Imprint) String() string {
	if len(m) == 0 {
		return "<none>"
	}
	return m.Alg().String() + ":" + hex.EncodeToString(m.Digest())
}

// Hex returns the whole imprint as upper-case hex, the form of the
// conformance pack.
func (m Imprint) Hex() string { return strings.ToUpper(hex.EncodeToString(m)) }

// MarshalText encodes the imprint as "ALG:hex".
func (m Imprint) MarshalText() ([]byte, error) { return []byte(m.String()), nil }
