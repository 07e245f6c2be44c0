package tlv

import "fmt"

// Builder appends encoded elements to a byte slice. Composite elements are
// opened with Begin and closed with End; the header form (TLV8 or TLV16) is
// chosen at End, when the value length is known. The first error (a value
// or a type out of range) is kept and returned by Bytes.
//
// The zero Builder is ready to use.
type Builder struct {
	buf  []byte
	open []openElem
	err  error
}

type openElem struct {
	typ         uint16
	nonCritical bool
	forward     bool
	start       int // offset of the reserved 4-byte header
}

// NewBuilder returns a Builder that appends to dst.
func NewBuilder(dst []byte) *Builder { return &Builder{buf: dst} }

// Bytes returns the encoded bytes, or the first error met while building.
func (b *Builder) Bytes() ([]byte, error) {
	if b.err != nil {
		return nil, b.err
	}
	if len(b.open) != 0 {
		return nil, fmt.Errorf("tlv: %d composite elements not closed", len(b.open))
	}
	return b.buf, nil
}

// Reset empties the builder, keeping its buffer for reuse.
func (b *Builder) Reset() {
	b.buf, b.open, b.err = b.buf[:0], b.open[:0], nil
}

func (b *Builder) header(typ uint16, nc, fwd bool, n int) {
	if b.err != nil {
		return
	}
	b.buf, b.err = AppendHeader(b.buf, typ, nc, fwd, n)
}

// Element appends an element with the given value.
func (b *Builder) Element(typ uint16, nonCritical, forward bool, value []byte) {
	b.header(typ, nonCritical, forward, len(value))
	if b.err == nil {
		b.buf = append(b.buf, value...)
	}
}

// Bin appends an octet-string element.
func (b *Builder) Bin(typ uint16, value []byte) { b.Element(typ, false, false, value) }

// Uint appends an unsigned integer element in minimal form.
func (b *Builder) Uint(typ uint16, x uint64) {
	b.header(typ, false, false, UintLen(x))
	if b.err == nil {
		b.buf = AppendUintValue(b.buf, x)
	}
}

// UTF8 appends a zero-terminated string element.
func (b *Builder) UTF8(typ uint16, s string) {
	b.header(typ, false, false, len(s)+1)
	if b.err == nil {
		b.buf = append(append(b.buf, s...), 0)
	}
}

// Raw appends already encoded bytes (a parsed element's Raw) unchanged.
func (b *Builder) Raw(raw []byte) {
	if b.err == nil {
		b.buf = append(b.buf, raw...)
	}
}

// Begin opens a composite element; its children follow until End.
func (b *Builder) Begin(typ uint16, nonCritical, forward bool) {
	b.open = append(b.open, openElem{typ, nonCritical, forward, len(b.buf)})
	b.buf = append(b.buf, 0, 0, 0, 0)
}

// End closes the innermost open composite element and writes its header.
func (b *Builder) End() {
	if len(b.open) == 0 {
		if b.err == nil {
			b.err = fmt.Errorf("tlv: End without Begin")
		}
		return
	}
	o := b.open[len(b.open)-1]
	b.open = b.open[:len(b.open)-1]
	if b.err != nil {
		return
	}
	n := len(b.buf) - o.start - 4
	hdr, err := AppendHeader(make([]byte, 0, 4), o.typ, o.nonCritical, o.forward, n)
	if err != nil {
		b.err = err
		return
	}
	if len(hdr) == 2 {
		copy(b.buf[o.start+2:], b.buf[o.start+4:])
		b.buf = b.buf[:len(b.buf)-2]
	}
	copy(b.buf[o.start:], hdr)
}

// Encode returns the encoding of one element with the given value.
func Encode(typ uint16, nonCritical, forward bool, value []byte) ([]byte, error) {
	b := NewBuilder(make([]byte, 0, HeaderSize(typ, len(value))+len(value)))
	b.Element(typ, nonCritical, forward, value)
	return b.Bytes()
}

// ResetTo empties the builder and makes it append to dst.
func (b *Builder) ResetTo(dst []byte) {
	b.buf, b.open, b.err = dst, b.open[:0], nil
}
