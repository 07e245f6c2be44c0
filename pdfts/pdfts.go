// Package pdfts finds the RFC 3161 document time-stamps in a PDF (ISO
// 32000-2 §12.8.5, PAdES: a signature dictionary of /Type /DocTimeStamp,
// /SubFilter /ETSI.RFC3161) and the bytes each one covers, so that the
// token can be checked against them. It reads the file's bytes, not its
// object structure: a signature's /ByteRange names the two spans it
// covers, and the gap between them is its /Contents hex string, whose
// DER is the token. A span that does not fit the file, a gap that is not
// one hex string, or a token whose DER does not end where it should are
// errors, never guesses. Pure: no I/O.
package pdfts

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strconv"
)

// MaxStamps bounds the signatures read from one file.
const MaxStamps = 64

// ErrFormat is a signature whose byte range or contents cannot be read.
var ErrFormat = errors.New("pdfts: malformed signature")

// Stamp is one signature of the file: the spans it covers and its
// contents (the DER of a time-stamp token for a document time-stamp; of
// a CMS signature otherwise).
type Stamp struct {
	// ByteRange is [start1 len1 start2 len2], as in the file.
	ByteRange [4]int64
	// Contents is the DER in the /Contents string, without its padding.
	Contents []byte
	// DocTimeStamp: the signature's dictionary says /SubFilter
	// /ETSI.RFC3161 (a document time-stamp), as far as the bytes between
	// its "<<" and its /ByteRange show.
	DocTimeStamp bool
	// WholeFile: the spans end at the end of the file, so nothing was
	// appended after the signature.
	WholeFile bool
}

// Find returns the file's signatures in the order they appear.
func Find(pdf []byte) ([]Stamp, error) {
	var out []Stamp
	key := []byte("/ByteRange")
	for off := 0; ; {
		i := bytes.Index(pdf[off:], key)
		if i < 0 {
			return out, nil
		}
		at := off + i
		off = at + len(key)
		if len(out) == MaxStamps {
			return nil, fmt.Errorf("%w: more than %d signatures", ErrFormat, MaxStamps)
		}
		br, err := byteRange(pdf[off:])
		if err != nil {
			return nil, fmt.Errorf("%w: /ByteRange at offset %d: %v", ErrFormat, at, err)
		}
		s, err := stamp(pdf, br)
		if err != nil {
			return nil, fmt.Errorf("%w: the signature with /ByteRange at offset %d: %v", ErrFormat, at, err)
		}
		s.DocTimeStamp = docTimeStamp(pdf, at, int(br[1]), int(br[2]))
		out = append(out, s)
	}
}

// byteRange reads "[a b c d]" after optional white space.
func byteRange(b []byte) ([4]int64, error) {
	var br [4]int64
	b = bytes.TrimLeft(b, " \t\r\n\f\x00")
	if len(b) == 0 || b[0] != '[' {
		return br, errors.New("no array")
	}
	end := bytes.IndexByte(b, ']')
	if end < 0 || end > 128 {
		return br, errors.New("no closing bracket")
	}
	fields := bytes.Fields(b[1:end])
	if len(fields) != 4 {
		return br, fmt.Errorf("%d numbers, want 4", len(fields))
	}
	for i, f := range fields {
		v, err := strconv.ParseInt(string(f), 10, 64)
		if err != nil || v < 0 {
			return br, fmt.Errorf("%q is not a byte offset", f)
		}
		br[i] = v
	}
	return br, nil
}

// stamp checks the spans against the file and reads the contents in the
// gap between them.
func stamp(pdf []byte, br [4]int64) (Stamp, error) {
	n := int64(len(pdf))
	a, la, b, lb := br[0], br[1], br[2], br[3]
	if a != 0 || la > n || b < la || lb > n || b > n-lb {
		return Stamp{}, fmt.Errorf("the spans [%d %d %d %d] do not fit a file of %d bytes from its start", a, la, b, lb, n)
	}
	gap := pdf[la:b]
	if len(gap) < 2 || gap[0] != '<' || gap[len(gap)-1] != '>' {
		return Stamp{}, errors.New("the gap between the spans is not the /Contents hex string")
	}
	raw, err := hex.DecodeString(string(gap[1 : len(gap)-1]))
	if err != nil {
		return Stamp{}, fmt.Errorf("/Contents: %v", err)
	}
	der, err := derPrefix(raw)
	if err != nil {
		return Stamp{}, fmt.Errorf("/Contents: %v", err)
	}
	return Stamp{ByteRange: br, Contents: der, WholeFile: b+lb == n}, nil
}

// derPrefix returns the DER element at the start of b; what follows must
// be zero padding.
func derPrefix(b []byte) ([]byte, error) {
	if len(b) < 2 || b[0] != 0x30 {
		return nil, errors.New("not a DER SEQUENCE")
	}
	hdr, length := 2, int(b[1])
	if b[1]&0x80 != 0 {
		k := int(b[1] & 0x7f)
		if k == 0 || k > 4 || len(b) < 2+k {
			return nil, errors.New("bad DER length")
		}
		length = 0
		for _, c := range b[2 : 2+k] {
			length = length<<8 | int(c)
		}
		hdr += k
	}
	if length > len(b)-hdr {
		return nil, fmt.Errorf("DER of %d bytes in a string of %d", hdr+length, len(b))
	}
	for _, c := range b[hdr+length:] {
		if c != 0 {
			return nil, errors.New("bytes other than padding after the DER")
		}
	}
	return b[:hdr+length], nil
}

// docTimeStamp reports whether the object holding the signature whose
// /ByteRange is at at and whose /Contents string is pdf[gapStart:gapEnd]
// says /ETSI.RFC3161 (its /SubFilter): the object is read from the end of
// the one before ("endobj") to its own end, without the contents string,
// so the keys may come in any order and nested dictionaries do not
// matter.
func docTimeStamp(pdf []byte, at, gapStart, gapEnd int) bool {
	lo, hi := min(at, gapStart), max(at, gapEnd)
	start := bytes.LastIndex(pdf[:lo], []byte("endobj"))
	start = max(start, 0)
	end := len(pdf)
	if i := bytes.Index(pdf[hi:], []byte("endobj")); i >= 0 {
		end = hi + i
	}
	key := []byte("/ETSI.RFC3161")
	return bytes.Contains(pdf[start:gapStart], key) || bytes.Contains(pdf[gapEnd:end], key)
}

// Hash writes the bytes the stamp covers to h and returns the digest.
func (s Stamp) Hash(pdf []byte, h hash.Hash) []byte {
	h.Reset()
	h.Write(pdf[s.ByteRange[0] : s.ByteRange[0]+s.ByteRange[1]])
	h.Write(pdf[s.ByteRange[2] : s.ByteRange[2]+s.ByteRange[3]])
	return h.Sum(nil)
}
