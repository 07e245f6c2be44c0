package pdu

import (
	"errors"
	"fmt"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/tlv"
)

// Status codes of responses and error elements (docs/design/formats.md#status-codes). Codes
// 0x104–0x107 mean different things to aggregators and extenders.
const (
	StatusOK                  uint64 = 0x000
	StatusInvalidRequest      uint64 = 0x101 // unparsable PDU
	StatusAuthFailure         uint64 = 0x102 // unknown login id or bad HMAC
	StatusInvalidPayload      uint64 = 0x103
	StatusInternalError       uint64 = 0x200
	StatusUpstreamError       uint64 = 0x300
	StatusUpstreamTimeout     uint64 = 0x301
	StatusAggrRequestTooLarge uint64 = 0x104 // aggregator: client tree too deep
	StatusAggrOverQuota       uint64 = 0x105
	StatusAggrTooManyRequests uint64 = 0x106
	StatusAggrInputTooLong    uint64 = 0x107 // aggregator: input hash too long
	StatusExtInvalidTimeRange uint64 = 0x104 // extender: time range backwards
	StatusExtTimeTooOld       uint64 = 0x105 // extender: before the calendar's first second
	StatusExtTimeTooNew       uint64 = 0x106 // extender: after the newest round
	StatusExtTimeInFuture     uint64 = 0x107
	StatusExtDatabaseMissing  uint64 = 0x201
	StatusExtDatabaseCorrupt  uint64 = 0x202
)

// ErrorPayload is an error element (0x03): a whole-message failure. A
// server sends it bare (without header and HMAC) when it could not read or
// authenticate the request, or inside an authenticated response.
type ErrorPayload struct {
	Status  uint64
	Message string // empty when absent
}

func parseErrorPayload(e tlv.Element) (ErrorPayload, error) {
	var p ErrorPayload
	var hasStatus, hasMsg bool
	err := walk(e, func(c tlv.Element) (bool, error) {
		var err error
		switch c.Type {
		case 0x04:
			if err = once(&hasStatus, "status"); err == nil {
				p.Status, err = c.Uint()
			}
		case 0x05:
			if err = once(&hasMsg, "error message"); err == nil {
				p.Message, err = decodeString(c)
			}
		default:
			return false, nil
		}
		return true, err
	}, nil)
	if err != nil {
		return ErrorPayload{}, err
	}
	if !hasStatus {
		return ErrorPayload{}, errors.New("missing status")
	}
	return p, nil
}

func (p *ErrorPayload) encode(b *tlv.Builder) error {
	if err := checkString(p.Message); err != nil {
		return fmt.Errorf("error message: %w", err)
	}
	b.Begin(tagError, false, false)
	b.Uint(0x04, p.Status)
	if p.Message != "" {
		b.UTF8(0x05, p.Message)
	}
	b.End()
	return nil
}

// Config is a configuration payload (0x04) of a response: an aggregator
// or extender telling the client its limits, on request or unsolicited.
// Each field has a presence flag because zero is a meaningful value (an
// aggregation algorithm of 0 is SHA-1).
type Config struct {
	MaxLevel    uint64 // deepest client tree the aggregator accepts
	HasMaxLevel bool

	AggregationAlgorithm    ksi.HashAlg
	HasAggregationAlgorithm bool

	AggregationPeriodMS    uint64 // round length in milliseconds
	HasAggregationPeriodMS bool

	MaxRequests    uint64 // requests per round the client may send
	HasMaxRequests bool

	ParentURIs []string

	CalendarFirstTime    uint64 // extender: first second of the calendar
	HasCalendarFirstTime bool

	CalendarLastTime    uint64 // extender: newest second of the calendar
	HasCalendarLastTime bool
}

func parseConfig(e tlv.Element) (Config, error) {
	var c Config
	err := walk(e, func(f tlv.Element) (bool, error) {
		var err error
		switch f.Type {
		case 0x01:
			if err = once(&c.HasMaxLevel, "max level"); err == nil {
				c.MaxLevel, err = f.Uint()
			}
		case 0x02:
			if err = once(&c.HasAggregationAlgorithm, "aggregation algorithm"); err == nil {
				var a byte
				a, err = f.Uint8()
				c.AggregationAlgorithm = ksi.HashAlg(a)
			}
		case 0x03:
			if err = once(&c.HasAggregationPeriodMS, "aggregation period"); err == nil {
				c.AggregationPeriodMS, err = f.Uint()
			}
		case 0x04:
			if err = once(&c.HasMaxRequests, "max requests"); err == nil {
				c.MaxRequests, err = f.Uint()
			}
		case 0x10:
			var s string
			if s, err = decodeString(f); err == nil {
				c.ParentURIs = append(c.ParentURIs, s)
			}
		case 0x11:
			if err = once(&c.HasCalendarFirstTime, "calendar first time"); err == nil {
				c.CalendarFirstTime, err = f.Uint()
			}
		case 0x12:
			if err = once(&c.HasCalendarLastTime, "calendar last time"); err == nil {
				c.CalendarLastTime, err = f.Uint()
			}
		default:
			return false, nil
		}
		return true, err
	}, nil)
	if err != nil {
		return Config{}, err
	}
	return c, nil
}

func (c *Config) encode(b *tlv.Builder) error {
	for _, u := range c.ParentURIs {
		if err := checkString(u); err != nil {
			return fmt.Errorf("config parent uri: %w", err)
		}
	}
	b.Begin(tagConfig, false, false)
	if c.HasMaxLevel {
		b.Uint(0x01, c.MaxLevel)
	}
	if c.HasAggregationAlgorithm {
		b.Uint(0x02, uint64(c.AggregationAlgorithm))
	}
	if c.HasAggregationPeriodMS {
		b.Uint(0x03, c.AggregationPeriodMS)
	}
	if c.HasMaxRequests {
		b.Uint(0x04, c.MaxRequests)
	}
	for _, u := range c.ParentURIs {
		b.UTF8(0x10, u)
	}
	if c.HasCalendarFirstTime {
		b.Uint(0x11, c.CalendarFirstTime)
	}
	if c.HasCalendarLastTime {
		b.Uint(0x12, c.CalendarLastTime)
	}
	b.End()
	return nil
}

// parseConfigRequest checks a config request (0x04), which has no fields:
// only non-critical extensions are tolerated inside it.
func parseConfigRequest(e tlv.Element) error {
	return walk(e, func(tlv.Element) (bool, error) { return false, nil }, nil)
}

// checkAck validates an acknowledgement payload (0x05). Acks are an
// optional timing feature Tempel neither sends nor uses (request, receipt
// and ack times in microseconds, aggregation delay, period and drift), so
// they are checked for shape only and carried raw.
func checkAck(e tlv.Element) error {
	return walk(e, func(f tlv.Element) (bool, error) {
		if f.Type < 0x01 || f.Type > 0x06 {
			return false, nil
		}
		_, err := f.Uint()
		return true, err
	}, nil)
}

// rawElement checks that raw is exactly one TLV element accepted by ok,
// before an encoder embeds it unchanged.
func rawElement(raw []byte, what string, ok func(tlv.Element) bool) error {
	e, err := tlv.ReadOne(raw)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if !ok(e) {
		return fmt.Errorf("%s: element %#x not allowed here", what, e.Type)
	}
	return nil
}

// Raw-element checks used by the encoders.
func isSignatureElement(e tlv.Element) bool { return e.Type >= 0x801 && e.Type <= 0x806 }
func isCalendarChain(e tlv.Element) bool    { return e.Type == 0x802 }
func isAck(e tlv.Element) bool              { return e.Type == tagAck }

// nonCriticalExcept returns a check for an unknown element: it must be
// non-critical (a writer never emits unknown critical elements) and not
// of a type the schema knows, which would change its meaning.
func nonCriticalExcept(known func(uint16) bool) func(tlv.Element) bool {
	return func(e tlv.Element) bool { return e.NonCritical && !known(e.Type) }
}

// encodeEnvelope writes a PDU of type typ: the header, the payloads written
// by body, and an HMAC with alg and key over everything before the digest.
func encodeEnvelope(typ uint16, h *Header, alg ksi.HashAlg, key []byte, sizeHint int, body func(b *tlv.Builder) error) ([]byte, error) {
	where := pduName(typ)
	if _, err := alg.New(); err != nil {
		return nil, fmt.Errorf("pdu: %s: hmac: %w", where, err)
	}
	if err := checkString(h.LoginID); err != nil {
		return nil, fmt.Errorf("pdu: %s: login id: %w", where, err)
	}
	n := alg.Size()
	b := tlv.NewBuilder(make([]byte, 0, sizeHint+64+n))
	b.Begin(typ, false, false)
	b.Begin(tagHeader, false, false)
	b.UTF8(0x01, h.LoginID)
	if h.HasInstanceID {
		b.Uint(0x02, h.InstanceID)
	}
	if h.HasMessageID {
		b.Uint(0x03, h.MessageID)
	}
	b.End()
	if err := body(b); err != nil {
		return nil, fmt.Errorf("pdu: %s: %w", where, err)
	}
	// The HMAC covers its own element header and algorithm byte, so the
	// element is written with a zero digest first and filled in after.
	var zero [64]byte
	mac := append([]byte{byte(alg)}, zero[:n]...)
	b.Element(tagHMAC, false, false, mac)
	b.End()
	out, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("pdu: %s: %w", where, err)
	}
	d, err := computeHMAC(alg, key, out[:len(out)-n])
	if err != nil {
		return nil, err
	}
	copy(out[len(out)-n:], d)
	return out, nil
}

// EncodeErrorPDU writes a bare error response (docs/design/formats.md#status-codes): an envelope
// of type pduType (TypeAggregatorResponse or TypeExtenderResponse) holding
// only the error element, without header or HMAC. A server sends it when
// it cannot authenticate the request, e.g. status 0x101 for an unparsable
// request encodes as 82 21 00 06 03 04 04 02 01 01.
func EncodeErrorPDU(pduType uint16, e ErrorPayload) ([]byte, error) {
	if pduType != TypeAggregatorResponse && pduType != TypeExtenderResponse {
		return nil, fmt.Errorf("pdu: error pdu: type %#x is not a response type", pduType)
	}
	b := tlv.NewBuilder(make([]byte, 0, 16+len(e.Message)))
	b.Begin(pduType, false, false)
	if err := e.encode(b); err != nil {
		return nil, fmt.Errorf("pdu: %s: %w", pduName(pduType), err)
	}
	b.End()
	out, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("pdu: %s: %w", pduName(pduType), err)
	}
	return out, nil
}
