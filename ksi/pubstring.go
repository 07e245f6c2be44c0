package ksi

import (
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"strings"
)

// Layout of the binary form behind a publication string (docs/design/formats.md#publication-strings):
// an 8-byte time, the imprint, a 4-byte CRC-32 of everything before it.
const (
	pubStrTimeLen  = 8
	pubStrCRCLen   = 4
	pubStrGroupLen = 6 // characters per dash-separated group
	// pubStrMinLen is the shortest binary form that can be checked: time,
	// algorithm byte and CRC, before the digest length is known.
	pubStrMinLen = pubStrTimeLen + 1 + pubStrCRCLen
	// MaxPublicationStringLen bounds the text accepted by
	// ParsePublicationString. The longest valid string (SHA-512: 77 bytes,
	// 128 base32 characters with padding, 21 dashes) is 149 characters;
	// the margin allows for extra dashes without letting a caller feed
	// megabytes into the decoder.
	MaxPublicationStringLen = 200
)

// PublicationString returns the publication string of (t, h) as the
// reference tools print it (docs/design/formats.md#publication-strings): base32 of time || imprint ||
// CRC-32, in groups of six characters joined by '-'. The padding '='
// characters, when the length needs them, are grouped like the others.
func PublicationString(t uint64, h Imprint) string {
	raw := make([]byte, 0, pubStrTimeLen+len(h)+pubStrCRCLen)
	raw = binary.BigEndian.AppendUint64(raw, t)
	raw = append(raw, h...)
	raw = binary.BigEndian.AppendUint32(raw, crc32.ChecksumIEEE(raw))
	enc := base32.StdEncoding.EncodeToString(raw)

	var sb strings.Builder
	sb.Grow(len(enc) + len(enc)/pubStrGroupLen)
	for i := 0; i < len(enc); i += pubStrGroupLen {
		if i > 0 {
			sb.WriteByte('-')
		}
		sb.WriteString(enc[i:min(i+pubStrGroupLen, len(enc))])
	}
	return sb.String()
}

// ParsePublicationString decodes a publication string (docs/design/formats.md#publication-strings) into
// published data with its canonical TLV encoding in Raw.
//
// Dashes are ignored wherever they are, as in the reference tools. The
// rest must be upper-case RFC 4648 base32 with correct '=' padding and
// zero unused trailing bits, so that every publication has exactly one
// accepted string apart from dash placement. The checksum, the algorithm
// and the exact length are checked; every failure wraps [ErrFormat] (an
// unknown algorithm also wraps [ErrUnknownAlg]).
func ParsePublicationString(s string) (PublishedData, error) {
	const where = "publication string"
	if len(s) > MaxPublicationStringLen {
		return PublishedData{}, formatErr(where, "too long (%d characters, at most %d)", len(s), MaxPublicationStringLen)
	}
	// Filter by hand: the base32 decoder silently skips '\r' and '\n',
	// and its errors do not say which character was wrong.
	clean := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '-':
		case c >= 'A' && c <= 'Z', c >= '2' && c <= '7', c == '=':
			clean = append(clean, c)
		default:
			return PublishedData{}, formatErr(where, "invalid character %q at offset %d", c, i)
		}
	}
	raw := make([]byte, base32.StdEncoding.DecodedLen(len(clean)))
	n, err := base32.StdEncoding.Decode(raw, clean)
	if err != nil {
		return PublishedData{}, formatErr(where, "bad base32: %v", err)
	}
	raw = raw[:n]
	if base32.StdEncoding.EncodeToString(raw) != string(clean) {
		return PublishedData{}, formatErr(where, "non-canonical base32 (nonzero trailing bits)")
	}
	if len(raw) < pubStrMinLen {
		return PublishedData{}, formatErr(where, "too short (%d bytes, at least %d)", len(raw), pubStrMinLen)
	}
	body := raw[:len(raw)-pubStrCRCLen]
	if crc32.ChecksumIEEE(body) != binary.BigEndian.Uint32(raw[len(raw)-pubStrCRCLen:]) {
		return PublishedData{}, formatErr(where, "bad checksum")
	}
	alg := HashAlg(body[pubStrTimeLen])
	if !alg.Known() {
		return PublishedData{}, fmt.Errorf("%w: %s: %w 0x%02x", ErrFormat, where, ErrUnknownAlg, byte(alg))
	}
	if want := pubStrTimeLen + 1 + alg.Size() + pubStrCRCLen; len(raw) != want {
		return PublishedData{}, formatErr(where, "%d bytes, %s needs %d", len(raw), alg, want)
	}
	t := binary.BigEndian.Uint64(body[:pubStrTimeLen])
	h := Imprint(body[pubStrTimeLen:len(body):len(body)]) // raw is ours: no copy needed
	return NewPublishedData(t, h), nil
}
