// Package tlv implements the KSI type-length-value encoding (docs/design/formats.md#tlv).
//
// An element has a type (0..0x1FFF), two flags (non-critical and forward)
// and a value of up to 65535 bytes. The header is two bytes (TLV8: types up
// to 0x1F and values up to 255 bytes) or four bytes (TLV16). Writers pick
// the shortest form; readers accept either form for any type.
//
// Parsed elements keep the exact bytes they were read from ([Element.Raw]),
// so a structure built from parsed elements re-encodes byte for byte. The
// package decodes one level at a time: whether a value holds nested
// elements is decided by the schema of the caller, not by a flag.
package tlv

import (
	"errors"
	"fmt"
)

// Header flag bits of the first header byte.
const (
	flagTLV16       = 0x80 // four-byte header
	flagNonCritical = 0x40 // a reader that does not know the type may skip it
	flagForward     = 0x20 // a relay that does not know the type passes it on
	typeMask8       = 0x1F
)

// Limits of the encoding.
const (
	MaxType      = 0x1FFF // largest type a TLV16 header can carry
	MaxValueLen  = 0xFFFF // largest value a TLV16 header can carry
	maxType8     = 0x1F
	maxValueLen8 = 0xFF
)

// Errors returned by the decoder. They are wrapped with the offset and type
// of the offending element; test with errors.Is.
var (
	ErrTruncated   = errors.New("tlv: truncated element")
	ErrTrailing    = errors.New("tlv: trailing bytes after element")
	ErrTooLarge    = errors.New("tlv: value longer than 65535 bytes")
	ErrTypeRange   = errors.New("tlv: type out of range")
	ErrEmptyInput  = errors.New("tlv: empty input")
	ErrIntTooLong  = errors.New("tlv: integer longer than 8 bytes")
	ErrIntOverflow = errors.New("tlv: integer out of range")
	ErrNotUTF8Z    = errors.New("tlv: string is not zero-terminated")
)

// Element is one decoded TLV element. Value and Raw alias the input buffer.
type Element struct {
	Type        uint16
	NonCritical bool
	Forward     bool
	TLV16       bool   // the element was read with (or is to be written with) a 4-byte header
	Value       []byte // the value bytes
	Raw         []byte // header and value exactly as read
}

// HeaderLen returns the length of the element's header in Raw.
func (e Element) HeaderLen() int { return len(e.Raw) - len(e.Value) }

// String describes the element for error messages and dumps.
func (e Element) String() string {
	return fmt.Sprintf("TLV[%#x%s%s len=%d]", e.Type, flagString(e.NonCritical, "N"), flagString(e.Forward, "F"), len(e.Value))
}

func flagString(set bool, s string) string {
	if set {
		return "," + s
	}
	return ""
}

// Next splits the element at the start of b into its type, its value and
// the bytes after it, without building an Element: the reader for loops
// over a composite's children, which are nearly all complete TLV8
// elements and take a short path; the rest go through Read.
func Next(b []byte) (typ uint16, value, rest []byte, err error) {
	if len(b) >= 2 && b[0]&flagTLV16 == 0 {
		if n := int(b[1]) + 2; n <= len(b) {
			return uint16(b[0] & typeMask8), b[2:n:n], b[n:], nil
		}
	}
	e, rest, err := readSlow(b)
	return e.Type, e.Value, rest, err
}

// Read decodes the element at the start of b and returns it with the bytes
// that follow it.
func Read(b []byte) (Element, []byte, error) {
	// Most elements are complete TLV8 ones: the short path first.
	if len(b) >= 2 && b[0]&flagTLV16 == 0 && int(b[1])+2 <= len(b) {
		n := int(b[1]) + 2
		h := b[0]
		return Element{Type: uint16(h & typeMask8), NonCritical: h&flagNonCritical != 0, Forward: h&flagForward != 0,
			Value: b[2:n:n], Raw: b[:n:n]}, b[n:], nil
	}
	return readSlow(b)
}

func readSlow(b []byte) (Element, []byte, error) {
	if len(b) == 0 {
		return Element{}, nil, ErrEmptyInput
	}
	if len(b) < 2 {
		return Element{}, nil, ErrTruncated
	}
	h := b[0]
	e := Element{NonCritical: h&flagNonCritical != 0, Forward: h&flagForward != 0}
	var hdr, n int
	if h&flagTLV16 != 0 {
		if len(b) < 4 {
			return Element{}, nil, fmt.Errorf("%w: 4-byte header needs 4 bytes, have %d", ErrTruncated, len(b))
		}
		e.TLV16 = true
		e.Type = uint16(h&typeMask8)<<8 | uint16(b[1])
		n = int(b[2])<<8 | int(b[3])
		hdr = 4
	} else {
		e.Type = uint16(h & typeMask8)
		n = int(b[1])
		hdr = 2
	}
	if len(b)-hdr < n {
		return Element{}, nil, fmt.Errorf("%w: type %#x declares %d value bytes, %d present", ErrTruncated, e.Type, n, len(b)-hdr)
	}
	e.Value = b[hdr : hdr+n : hdr+n]
	e.Raw = b[: hdr+n : hdr+n]
	return e, b[hdr+n:], nil
}

// ReadOne decodes b as exactly one element.
func ReadOne(b []byte) (Element, error) {
	e, rest, err := Read(b)
	if err != nil {
		return Element{}, err
	}
	if len(rest) != 0 {
		return Element{}, fmt.Errorf("%w: %d bytes after type %#x", ErrTrailing, len(rest), e.Type)
	}
	return e, nil
}

// ReadAll decodes b as a sequence of elements (the value of a composite).
func ReadAll(b []byte) ([]Element, error) {
	// Every element takes at least two bytes: size the slice once.
	out := make([]Element, 0, countHint(b))
	for off := 0; len(b) > 0; {
		e, rest, err := Read(b)
		if err != nil {
			return nil, fmt.Errorf("at offset %d: %w", off, err)
		}
		off += len(e.Raw)
		out = append(out, e)
		b = rest
	}
	return out, nil
}

// countHint counts top-level elements cheaply, to size the result of ReadAll.
func countHint(b []byte) int {
	n := 0
	for len(b) >= 2 {
		hdr, l := 2, int(b[1])
		if b[0]&flagTLV16 != 0 {
			if len(b) < 4 {
				break
			}
			hdr, l = 4, int(b[2])<<8|int(b[3])
		}
		if len(b) < hdr+l {
			break
		}
		b = b[hdr+l:]
		n++
	}
	return n + 1
}

// Children decodes the value of e as a sequence of elements.
func (e Element) Children() ([]Element, error) {
	return ReadAll(e.Value)
}

// Uint decodes the value as an unsigned big-endian integer of at most 8
// bytes. An empty value is zero; leading zero bytes are accepted.
func (e Element) Uint() (uint64, error) { return DecodeUint(e.Value) }

// DecodeUint decodes an unsigned big-endian integer of at most 8 bytes.
func DecodeUint(v []byte) (uint64, error) {
	if len(v) > 8 {
		return 0, fmt.Errorf("%w (%d bytes)", ErrIntTooLong, len(v))
	}
	var x uint64
	for _, c := range v {
		x = x<<8 | uint64(c)
	}
	return x, nil
}

// Uint8 decodes a one-byte integer field (hash algorithm ids).
func (e Element) Uint8() (byte, error) {
	x, err := e.Uint()
	if err != nil {
		return 0, err
	}
	if x > 0xFF {
		return 0, fmt.Errorf("%w: %d does not fit in one byte", ErrIntOverflow, x)
	}
	return byte(x), nil
}

// String8 decodes a zero-terminated UTF-8 string value.
func (e Element) UTF8() (string, error) { return DecodeUTF8(e.Value) }

// DecodeUTF8 decodes a zero-terminated UTF-8 string value. The terminating
// zero byte is part of the value and is removed.
func DecodeUTF8(v []byte) (string, error) {
	if len(v) == 0 || v[len(v)-1] != 0 {
		return "", ErrNotUTF8Z
	}
	return string(v[:len(v)-1]), nil
}

// HeaderSize returns the size of the header a writer uses for an element
// of type typ with a value of n bytes.
func HeaderSize(typ uint16, n int) int {
	if typ > maxType8 || n > maxValueLen8 {
		return 4
	}
	return 2
}

// AppendHeader appends the header of an element of type typ with n value
// bytes, picking TLV16 when the type or the length needs it.
func AppendHeader(dst []byte, typ uint16, nonCritical, forward bool, n int) ([]byte, error) {
	if typ > MaxType {
		return dst, fmt.Errorf("%w: %#x", ErrTypeRange, typ)
	}
	if n > MaxValueLen {
		return dst, fmt.Errorf("%w: type %#x, %d bytes", ErrTooLarge, typ, n)
	}
	var f byte
	if nonCritical {
		f |= flagNonCritical
	}
	if forward {
		f |= flagForward
	}
	if HeaderSize(typ, n) == 4 {
		return append(dst, flagTLV16|f|byte(typ>>8), byte(typ), byte(n>>8), byte(n)), nil
	}
	return append(dst, f|byte(typ), byte(n)), nil
}

// AppendKnownHeader is AppendHeader for a critical element that is not
// forwarded, with a type and length the caller has already checked
// (typ <= MaxType, n <= MaxValueLen): small enough to inline on hot paths
// that size a structure once and then write it.
func AppendKnownHeader(dst []byte, typ uint16, n int) []byte {
	if typ > maxType8 || n > maxValueLen8 {
		return append(dst, flagTLV16|byte(typ>>8), byte(typ), byte(n>>8), byte(n))
	}
	return append(dst, byte(typ), byte(n))
}

// UintLen returns the number of bytes of the minimal encoding of x (zero
// is encoded as an empty value).
func UintLen(x uint64) int {
	n := 0
	for ; x != 0; x >>= 8 {
		n++
	}
	return n
}

// AppendUintValue appends the minimal big-endian encoding of x.
func AppendUintValue(dst []byte, x uint64) []byte {
	for i := UintLen(x) - 1; i >= 0; i-- {
		dst = append(dst, byte(x>>(8*i)))
	}
	return dst
}

// Iter walks the elements of a composite's value without allocating.
type Iter struct {
	b   []byte
	off int
}

// NewIter returns an iterator over the elements encoded in value.
func NewIter(value []byte) Iter { return Iter{b: value} }

// Next returns the next element; ok is false at the end. A malformed
// element is an error naming its offset.
func (it *Iter) Next() (e Element, ok bool, err error) {
	if len(it.b) == 0 {
		return Element{}, false, nil
	}
	e, rest, err := Read(it.b)
	if err != nil {
		return Element{}, false, fmt.Errorf("at offset %d: %w", it.off, err)
	}
	it.off += len(e.Raw)
	it.b = rest
	return e, true, nil
}

// Count returns the number of elements in value, or -1 if it is malformed.
func Count(value []byte) int {
	n := 0
	for len(value) > 0 {
		if len(value) < 2 {
			return -1
		}
		hdr, l := 2, int(value[1])
		if value[0]&flagTLV16 != 0 {
			if len(value) < 4 {
				return -1
			}
			hdr, l = 4, int(value[2])<<8|int(value[3])
		}
		if len(value) < hdr+l {
			return -1
		}
		value = value[hdr+l:]
		n++
	}
	return n
}
