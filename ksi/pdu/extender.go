package pdu

import (
	"errors"
	"fmt"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/tlv"
)

// ExtendRequest asks for a calendar chain from a signature's aggregation
// time to a publication (payload 0x02 of an extender request,
// docs/design/formats.md#extension).
type ExtendRequest struct {
	RequestID uint64
	// AggregationTime is the signature's aggregation time (POSIX seconds).
	AggregationTime uint64
	// PublicationTime is the target publication; absent means the newest
	// calendar second ("head").
	PublicationTime    uint64
	HasPublicationTime bool
}

func parseExtendRequest(e tlv.Element) (ExtendRequest, error) {
	var r ExtendRequest
	var hasID, hasAggr bool
	err := walk(e, func(c tlv.Element) (bool, error) {
		var err error
		switch c.Type {
		case 0x01:
			if err = once(&hasID, "request id"); err == nil {
				r.RequestID, err = c.Uint()
			}
		case 0x02:
			if err = once(&hasAggr, "aggregation time"); err == nil {
				r.AggregationTime, err = c.Uint()
			}
		case 0x03:
			if err = once(&r.HasPublicationTime, "publication time"); err == nil {
				r.PublicationTime, err = c.Uint()
			}
		default:
			return false, nil
		}
		return true, err
	}, nil)
	switch {
	case err != nil:
		return ExtendRequest{}, err
	case !hasID:
		return ExtendRequest{}, errors.New("missing request id")
	case !hasAggr:
		return ExtendRequest{}, errors.New("missing aggregation time")
	}
	return r, nil
}

func (r *ExtendRequest) encode(b *tlv.Builder) {
	b.Begin(tagPayload, false, false)
	b.Uint(0x01, r.RequestID)
	b.Uint(0x02, r.AggregationTime)
	if r.HasPublicationTime {
		b.Uint(0x03, r.PublicationTime)
	}
	b.End()
}

// ExtendResponse answers one ExtendRequest (payload 0x02 of an extender
// response).
type ExtendResponse struct {
	RequestID uint64
	// Status is 0 on success; an absent status reads as 0, as in libksi.
	Status       uint64
	ErrorMessage string // empty when absent
	// CalendarLastTime is the newest second of the extender's calendar.
	CalendarLastTime    uint64
	HasCalendarLastTime bool
	// CalendarChain is the raw calendar hash chain element (0x802), nil
	// when absent. It replaces the signature's calendar chain.
	CalendarChain []byte
	// Unknown holds unknown non-critical children, raw.
	Unknown [][]byte
}

func isExtendResponseField(t uint16) bool {
	return t == 0x01 || t == 0x04 || t == 0x05 || t == 0x12 || t == 0x802
}

func parseExtendResponse(e tlv.Element) (ExtendResponse, error) {
	var r ExtendResponse
	var hasID, hasStatus, hasMsg bool
	err := walk(e, func(c tlv.Element) (bool, error) {
		var err error
		switch c.Type {
		case 0x01:
			if err = once(&hasID, "request id"); err == nil {
				r.RequestID, err = c.Uint()
			}
		case 0x04:
			if err = once(&hasStatus, "status"); err == nil {
				r.Status, err = c.Uint()
			}
		case 0x05:
			if err = once(&hasMsg, "error message"); err == nil {
				r.ErrorMessage, err = decodeString(c)
			}
		case 0x12:
			if err = once(&r.HasCalendarLastTime, "calendar last time"); err == nil {
				r.CalendarLastTime, err = c.Uint()
			}
		case 0x802:
			if r.CalendarChain != nil {
				err = errors.New("repeated calendar chain")
			}
			r.CalendarChain = c.Raw
		default:
			return false, nil
		}
		return true, err
	}, &r.Unknown)
	if err != nil {
		return ExtendResponse{}, err
	}
	if !hasID {
		return ExtendResponse{}, errors.New("missing request id")
	}
	return r, nil
}

func (r *ExtendResponse) encode(b *tlv.Builder) error {
	if err := checkString(r.ErrorMessage); err != nil {
		return fmt.Errorf("extend response %d: error message: %w", r.RequestID, err)
	}
	if r.CalendarChain != nil {
		if err := rawElement(r.CalendarChain, "calendar chain", isCalendarChain); err != nil {
			return fmt.Errorf("extend response %d: %w", r.RequestID, err)
		}
	}
	for _, u := range r.Unknown {
		if err := rawElement(u, "unknown element", nonCriticalExcept(isExtendResponseField)); err != nil {
			return fmt.Errorf("extend response %d: %w", r.RequestID, err)
		}
	}
	b.Begin(tagPayload, false, false)
	b.Uint(0x01, r.RequestID)
	b.Uint(0x04, r.Status)
	if r.ErrorMessage != "" {
		b.UTF8(0x05, r.ErrorMessage)
	}
	if r.HasCalendarLastTime {
		b.Uint(0x12, r.CalendarLastTime)
	}
	b.Raw(r.CalendarChain)
	for _, u := range r.Unknown {
		b.Raw(u)
	}
	b.End()
	return nil
}

// ExtenderRequest is a request PDU to an extender (0x320).
type ExtenderRequest struct {
	Envelope
	Requests []ExtendRequest
	// ConfigRequest is set when the PDU asks for the extender's
	// configuration (an empty 0x04 payload).
	ConfigRequest bool
	// Unknown holds unknown non-critical payloads, raw.
	Unknown [][]byte
}

func isExtenderRequestPayload(t uint16) bool {
	return t == tagHeader || t == tagPayload || t == tagConfig || t == tagHMAC
}

// ParseExtenderRequest parses an extender request PDU. It does not check
// the HMAC; see [Envelope.Verify].
func ParseExtenderRequest(b []byte) (*ExtenderRequest, error) {
	r := &ExtenderRequest{}
	c, err := parseRequest(b, TypeExtenderRequest, "extender request", "extend request", parseExtendRequest, &r.Requests, false)
	if err != nil {
		return nil, err
	}
	r.Envelope, r.ConfigRequest, r.Unknown = c.Envelope, c.ConfigRequest, c.Unknown
	return r, nil
}

// Encode writes the request with its header and payloads and an HMAC
// computed with alg and key. Raw and HMAC of r are ignored and not
// changed.
func (r *ExtenderRequest) Encode(alg ksi.HashAlg, key []byte) ([]byte, error) {
	if len(r.Requests) == 0 && !r.ConfigRequest {
		return nil, errors.New("pdu: extender request: no payload")
	}
	size := len(r.Requests) * 32
	for _, u := range r.Unknown {
		size += len(u)
	}
	return encodeEnvelope(TypeExtenderRequest, &r.Header, alg, key, size, func(b *tlv.Builder) error {
		for i := range r.Requests {
			r.Requests[i].encode(b)
		}
		if r.ConfigRequest {
			b.Element(tagConfig, false, false, nil)
		}
		return encodeRawPayloads(b, nil, r.Unknown, isExtenderRequestPayload)
	})
}

// ExtenderResponse is a response PDU from an extender (0x321). A bare
// error response has only Error set: no Header, no HMAC.
type ExtenderResponse struct {
	Envelope
	Responses []ExtendResponse
	// Error is a whole-message error element (0x03), if any.
	Error *ErrorPayload
	// Config is the extender's configuration, if sent.
	Config *Config
	// Acks are raw acknowledgement payloads (0x05); libksi accepts them
	// from extenders too.
	Acks [][]byte
	// Unknown holds unknown non-critical payloads, raw.
	Unknown [][]byte
}

// ParseExtenderResponse parses an extender response PDU, including a bare
// error response. It does not check the HMAC; see [Envelope.Verify].
func ParseExtenderResponse(b []byte) (*ExtenderResponse, error) {
	r := &ExtenderResponse{}
	c, err := parseResponse(b, TypeExtenderResponse, "extender response", "extend response", parseExtendResponse, &r.Responses)
	if err != nil {
		return nil, err
	}
	r.Envelope, r.Error, r.Config, r.Acks, r.Unknown = c.Envelope, c.Error, c.Config, c.Acks, c.Unknown
	return r, nil
}

// Encode writes the response with its header, payloads (extend
// responses, error, config, acks, unknown payloads, in that order) and an
// HMAC computed with alg and key, which must be the algorithm of the
// request. Calendar chains are embedded unchanged. Raw and HMAC of r are
// ignored and not changed. A bare error response is written with
// EncodeErrorPDU instead.
func (r *ExtenderResponse) Encode(alg ksi.HashAlg, key []byte) ([]byte, error) {
	if len(r.Responses) == 0 && r.Error == nil && r.Config == nil && len(r.Acks) == 0 {
		return nil, errors.New("pdu: extender response: no payload")
	}
	size := 0
	for i := range r.Responses {
		size += 40 + len(r.Responses[i].ErrorMessage) + len(r.Responses[i].CalendarChain)
		for _, u := range r.Responses[i].Unknown {
			size += len(u)
		}
	}
	return encodeEnvelope(TypeExtenderResponse, &r.Header, alg, key, size, func(b *tlv.Builder) error {
		for i := range r.Responses {
			if err := r.Responses[i].encode(b); err != nil {
				return err
			}
		}
		return encodeCommonResponsePayloads(b, r.Error, r.Config, r.Acks, r.Unknown)
	})
}
