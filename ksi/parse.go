package ksi

import (
	"errors"
	"fmt"

	"github.com/tempel-ksi/tempel/ksi/tlv"
)

// ErrFormat marks every structural parse error of KSI data: a missing or
// repeated element, an unknown critical element, a malformed value. Test
// with errors.Is(err, ErrFormat); the message names the element.
var ErrFormat = errors.New("ksi: format error")

// Limits on parsed data; a KSI object is one TLV16 element at most.
const (
	// MaxObjectSize bounds a signature or PDU: one TLV16 element.
	MaxObjectSize = 4 + tlv.MaxValueLen
	// MaxChainLinks bounds the links of one hash chain (shape fits 64 bits).
	MaxChainLinks = 64
)

// FormatError is a parse error with the path of elements leading to it,
// e.g. "signature: aggregation chain: element 0x5: malformed imprint".
type FormatError struct {
	Where string // element path, outermost first
	Err   error
}

func (e *FormatError) Error() string { return "ksi: format error: " + e.Where + ": " + e.Err.Error() }

// Unwrap returns the cause; errors.Is(err, ErrFormat) holds for every FormatError.
func (e *FormatError) Unwrap() []error { return []error{ErrFormat, e.Err} }

func formatErr(where string, format string, args ...any) error {
	return &FormatError{Where: where, Err: fmt.Errorf(format, args...)}
}

// nestErr puts an inner element's error under its parent's path.
func nestErr(where string, typ uint16, err error) error {
	var fe *FormatError
	if errors.As(err, &fe) {
		return &FormatError{Where: fmt.Sprintf("%s: %s", where, fe.Where), Err: fe.Err}
	}
	return &FormatError{Where: fmt.Sprintf("%s: element %#x", where, typ), Err: err}
}

// fields walks the children encoded in value and dispatches known types
// to the handler. Unknown children are an error when critical and kept in
// unknown otherwise. It reads in place, without a slice of children.
func fields(where string, value []byte, unknown *[]tlv.Element, handle func(e tlv.Element) (known bool, err error)) error {
	for off := 0; len(value) > 0; {
		c, rest, err := tlv.Read(value)
		if err != nil {
			return formatErr(where, "at offset %d: %v", off, err)
		}
		off += len(c.Raw)
		value = rest
		known, err := handle(c)
		if err != nil {
			return nestErr(where, c.Type, err)
		}
		if !known {
			if err := keepUnknown(where, c, unknown); err != nil {
				return err
			}
		}
	}
	return nil
}

// keepUnknown handles a child of a type the parser does not know: an
// error when it is critical, else kept in *unknown (when not nil).
func keepUnknown(where string, c tlv.Element, unknown *[]tlv.Element) error {
	if !c.NonCritical {
		return formatErr(where, "unknown critical element %#x", c.Type)
	}
	if unknown != nil {
		*unknown = append(*unknown, c)
	}
	return nil
}

// once is a helper for C1/C0_1 fields: it fails when the field was seen.
func once(seen *bool, name string) error {
	if *seen {
		return fmt.Errorf("repeated %s", name)
	}
	*seen = true
	return nil
}

// elementAt returns the whole element at the start of b, which a loop
// over tlv.Next has already read once (so it is well formed).
func elementAt(b []byte) tlv.Element {
	e, _, _ := tlv.Read(b)
	return e
}

func readImprint(e tlv.Element) (Imprint, error) { return ParseImprint(e.Value) }

func readAlg(e tlv.Element) (HashAlg, error) {
	b, err := e.Uint8()
	return HashAlg(b), err
}
