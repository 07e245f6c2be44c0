package pdu

import (
	"crypto/hmac"
	"errors"
	"fmt"
	"hash"
	"unicode/utf8"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/tlv"
)

// Types of the PDU envelopes.
const (
	TypeAggregatorRequest  uint16 = 0x220
	TypeAggregatorResponse uint16 = 0x221
	TypeExtenderRequest    uint16 = 0x320
	TypeExtenderResponse   uint16 = 0x321

	// Legacy PDU version 1 envelopes, recognised only to refuse them.
	typeAggregatorV1 uint16 = 0x200
	typeExtenderV1   uint16 = 0x300
)

// Types of the envelope's children. The payload types are shared by all
// four envelopes; which of them an envelope admits is decided by its
// parser.
const (
	tagHeader  uint16 = 0x01
	tagPayload uint16 = 0x02 // aggregation or extension request/response
	tagError   uint16 = 0x03
	tagConfig  uint16 = 0x04 // config request (empty) or config response
	tagAck     uint16 = 0x05
	tagHMAC    uint16 = 0x1F
)

// MaxSize is the largest PDU: one TLV16 element with a 65535-byte value.
const MaxSize = ksi.MaxObjectSize

// Errors a caller branches on. Structural errors wrap [ksi.ErrFormat]
// instead; test with errors.Is.
var (
	// ErrHMAC means the HMAC does not match the message and the key. Treat
	// the whole message as unauthenticated; the error deliberately does not
	// say whether the key or the message was wrong.
	ErrHMAC = errors.New("pdu: hmac mismatch")
	// ErrNoHMAC is returned by Verify for a bare error response, which
	// carries no HMAC: its status may be reported but not trusted.
	ErrNoHMAC = errors.New("pdu: bare error pdu carries no hmac")
	// ErrVersion1 marks a legacy PDU version 1 message (0x200, 0x300),
	// which Tempel does not speak; it also wraps ksi.ErrFormat.
	ErrVersion1 = errors.New("pdu: PDU v1 not supported")
)

// formatError is a structural parse error. It wraps ksi.ErrFormat and the
// underlying cause (a tlv or ksi error, when there is one).
type formatError struct {
	where string // which message, e.g. "aggregator response"
	err   error
}

func (e *formatError) Error() string { return "pdu: " + e.where + ": " + e.err.Error() }

func (e *formatError) Unwrap() []error { return []error{ksi.ErrFormat, e.err} }

func formatErr(where string, err error) error { return &formatError{where, err} }

// versionError refuses a legacy PDU version 1 message. It is a format
// error too, so callers that only test for ksi.ErrFormat still refuse it.
type versionError struct{ typ uint16 }

func (e *versionError) Error() string { return fmt.Sprintf("%v (type %#x)", ErrVersion1, e.typ) }

func (e *versionError) Unwrap() []error { return []error{ErrVersion1, ksi.ErrFormat} }

// Header is the PDU header (0x01), the first child of every envelope.
type Header struct {
	// LoginID names the user whose key made the HMAC; a server echoes
	// the request's login id in its response.
	LoginID string
	// InstanceID should grow with every start of the client process.
	InstanceID    uint64
	HasInstanceID bool
	// MessageID numbers the messages of one client instance.
	MessageID    uint64
	HasMessageID bool
}

// Envelope holds the parts that every authenticated PDU has. It is
// embedded in the four message types.
type Envelope struct {
	Header Header
	// HMAC is the imprint of the 0x1F element; nil for a bare error
	// response.
	HMAC ksi.Imprint
	// Raw is the whole message as parsed; nil for messages built in code.
	Raw []byte
}

// Verify checks the HMAC of a parsed message against key (docs/design/formats.md#hmac)
// in constant time. It returns ErrHMAC on mismatch, ErrNoHMAC for a bare
// error response, and an error for an HMAC algorithm Tempel cannot
// compute. The caller should also check that HMAC.Alg() is the algorithm
// it expects, as the reference clients do.
func (e *Envelope) Verify(key []byte) error {
	if e.HMAC == nil {
		return ErrNoHMAC
	}
	alg := e.HMAC.Alg()
	n := alg.Size()
	// The digest is the tail of Raw (the HMAC element is the last child),
	// preceded by the algorithm byte. Anything else was not produced by
	// the parser and cannot be checked.
	if n == 0 || len(e.Raw) < n+1 || e.Raw[len(e.Raw)-n-1] != byte(alg) || len(e.HMAC) != n+1 {
		return ErrHMAC
	}
	mac, err := computeHMAC(alg, key, e.Raw[:len(e.Raw)-n])
	if err != nil {
		return err
	}
	if !hmac.Equal(mac, e.HMAC.Digest()) || !hmac.Equal(mac, e.Raw[len(e.Raw)-n:]) {
		return ErrHMAC
	}
	return nil
}

// computeHMAC returns HMAC_alg(key, msg).
func computeHMAC(alg ksi.HashAlg, key, msg []byte) ([]byte, error) {
	if _, err := alg.New(); err != nil {
		return nil, fmt.Errorf("pdu: hmac: %w", err)
	}
	m := hmac.New(func() hash.Hash {
		h, _ := alg.New() // checked above
		return h
	}, key)
	m.Write(msg)
	return m.Sum(nil), nil
}

// envelope is an envelope split into its parts, before the payloads are
// decoded by the message's own parser.
type envelope struct {
	Envelope
	payloads []tlv.Element // the children between header and HMAC
	bare     *ErrorPayload // set for a bare error response
}

// pduName names an envelope type for error messages.
func pduName(typ uint16) string {
	switch typ {
	case TypeAggregatorRequest:
		return "aggregator request"
	case TypeAggregatorResponse:
		return "aggregator response"
	case TypeExtenderRequest:
		return "extender request"
	case TypeExtenderResponse:
		return "extender response"
	}
	return fmt.Sprintf("pdu %#x", typ)
}

// parseEnvelope reads b as one PDU of type want: header first, HMAC last,
// or (when bareOK) a bare error element alone.
func parseEnvelope(b []byte, want uint16, bareOK bool) (envelope, error) {
	where := pduName(want)
	if len(b) > MaxSize {
		return envelope{}, formatErr(where, fmt.Errorf("%d bytes, more than the maximum of %d", len(b), MaxSize))
	}
	outer, err := tlv.ReadOne(b)
	if err != nil {
		return envelope{}, formatErr(where, err)
	}
	switch outer.Type {
	case want:
	case typeAggregatorV1, typeExtenderV1:
		return envelope{}, &versionError{outer.Type}
	default:
		return envelope{}, formatErr(where, fmt.Errorf("wrong pdu type %#x, want %#x", outer.Type, want))
	}
	children, err := outer.Children()
	if err != nil {
		return envelope{}, formatErr(where, err)
	}
	if len(children) == 0 {
		return envelope{}, formatErr(where, errors.New("empty pdu"))
	}
	if children[0].Type != tagHeader {
		if bareOK && isBareError(children) {
			return parseBareError(where, children, b)
		}
		for _, c := range children[1:] {
			if c.Type == tagHeader {
				return envelope{}, formatErr(where, fmt.Errorf("header is not the first element (first is %#x)", children[0].Type))
			}
		}
		return envelope{}, formatErr(where, fmt.Errorf("missing header (first element is %#x)", children[0].Type))
	}
	last := children[len(children)-1]
	if len(children) < 2 || last.Type != tagHMAC {
		for _, c := range children[:len(children)-1] {
			if c.Type == tagHMAC {
				return envelope{}, formatErr(where, errors.New("hmac is not the last element"))
			}
		}
		return envelope{}, formatErr(where, errors.New("missing hmac"))
	}
	env := envelope{payloads: children[1 : len(children)-1]}
	env.Raw = b
	if env.Header, err = parseHeader(children[0]); err != nil {
		return envelope{}, formatErr(where, fmt.Errorf("header: %w", err))
	}
	if env.HMAC, err = ksi.ParseImprint(last.Value); err != nil {
		return envelope{}, formatErr(where, fmt.Errorf("hmac: %w", err))
	}
	for _, c := range env.payloads {
		switch c.Type {
		case tagHeader:
			return envelope{}, formatErr(where, errors.New("repeated header"))
		case tagHMAC:
			return envelope{}, formatErr(where, errors.New("hmac is not the last element"))
		}
	}
	return env, nil
}

// isBareError reports whether children form a bare error response: an
// error element and nothing but non-critical elements beside it. A
// header or HMAC anywhere means a malformed envelope instead.
func isBareError(children []tlv.Element) bool {
	seen := false
	for _, c := range children {
		switch {
		case c.Type == tagError:
			seen = true
		case c.Type == tagHeader || c.Type == tagHMAC || !c.NonCritical:
			return false
		}
	}
	return seen
}

func parseBareError(where string, children []tlv.Element, raw []byte) (envelope, error) {
	env := envelope{}
	env.Raw = raw
	for _, c := range children {
		if c.Type != tagError {
			continue // non-critical, checked by isBareError
		}
		if env.bare != nil {
			return envelope{}, formatErr(where, errors.New("repeated error element"))
		}
		e, err := parseErrorPayload(c)
		if err != nil {
			return envelope{}, formatErr(where, fmt.Errorf("error element: %w", err))
		}
		env.bare = &e
	}
	return env, nil
}

func parseHeader(e tlv.Element) (Header, error) {
	var h Header
	var hasLogin bool
	err := walk(e, func(c tlv.Element) (bool, error) {
		var err error
		switch c.Type {
		case 0x01:
			if err = once(&hasLogin, "login id"); err == nil {
				h.LoginID, err = decodeString(c)
			}
		case 0x02:
			if err = once(&h.HasInstanceID, "instance id"); err == nil {
				h.InstanceID, err = c.Uint()
			}
		case 0x03:
			if err = once(&h.HasMessageID, "message id"); err == nil {
				h.MessageID, err = c.Uint()
			}
		default:
			return false, nil
		}
		return true, err
	}, nil)
	if err != nil {
		return Header{}, err
	}
	if !hasLogin {
		return Header{}, errors.New("missing login id")
	}
	return h, nil
}

// walk decodes the children of the composite e and hands each to handle,
// which reports whether it knows the type. Unknown critical children are
// an error; unknown non-critical ones are appended to unknown (when not
// nil) as raw bytes, or skipped.
func walk(e tlv.Element, handle func(c tlv.Element) (known bool, err error), unknown *[][]byte) error {
	children, err := e.Children()
	if err != nil {
		return err
	}
	for _, c := range children {
		known, err := handle(c)
		if err != nil {
			return fmt.Errorf("element %#x: %w", c.Type, err)
		}
		if known {
			continue
		}
		if !c.NonCritical {
			return fmt.Errorf("unknown critical element %#x", c.Type)
		}
		if unknown != nil {
			*unknown = append(*unknown, c.Raw)
		}
	}
	return nil
}

// once fails when a field that may appear at most once was already seen.
func once(seen *bool, name string) error {
	if *seen {
		return fmt.Errorf("repeated %s", name)
	}
	*seen = true
	return nil
}

// Errors of the string rule (docs/design/formats.md#values) beyond the terminator, which
// tlv checks.
var (
	errNotUTF8 = errors.New("string is not valid UTF-8")
	errNUL     = errors.New("string contains a zero byte before its end")
)

// decodeString decodes a zero-terminated UTF-8 value. Embedded zero bytes
// are refused: a C implementation would read a shorter string than Go,
// and a login id must mean the same thing to both.
func decodeString(e tlv.Element) (string, error) {
	s, err := e.UTF8()
	if err != nil {
		return "", err
	}
	if err := checkString(s); err != nil {
		return "", err
	}
	return s, nil
}

func checkString(s string) error {
	if !utf8.ValidString(s) {
		return errNotUTF8
	}
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return errNUL
		}
	}
	return nil
}
