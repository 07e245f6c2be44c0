package pdu

import (
	"errors"
	"fmt"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/tlv"
)

// AggregationRequest asks for a signature of one hash (payload 0x02 of
// an aggregator request, docs/design/formats.md#aggregation).
type AggregationRequest struct {
	// RequestID is chosen by the client and echoed in the response.
	RequestID uint64
	// Hash is the document imprint or the root of the client's own tree.
	Hash ksi.Imprint
	// Level is the height of Hash above the documents when the client
	// aggregated locally; absent means 0.
	Level    uint64
	HasLevel bool
}

func parseAggregationRequest(e tlv.Element) (AggregationRequest, error) {
	var r AggregationRequest
	var hasID, hasHash bool
	err := walk(e, func(c tlv.Element) (bool, error) {
		var err error
		switch c.Type {
		case 0x01:
			if err = once(&hasID, "request id"); err == nil {
				r.RequestID, err = c.Uint()
			}
		case 0x02:
			if err = once(&hasHash, "request hash"); err == nil {
				r.Hash, err = ksi.ParseImprint(c.Value)
			}
		case 0x03:
			if err = once(&r.HasLevel, "request level"); err == nil {
				r.Level, err = c.Uint()
			}
		default:
			return false, nil
		}
		return true, err
	}, nil)
	switch {
	case err != nil:
		return AggregationRequest{}, err
	case !hasID:
		return AggregationRequest{}, errors.New("missing request id")
	case !hasHash:
		return AggregationRequest{}, errors.New("missing request hash")
	}
	return r, nil
}

func (r *AggregationRequest) encode(b *tlv.Builder) error {
	if _, err := ksi.ParseImprint(r.Hash); err != nil {
		return fmt.Errorf("aggregation request %d: %w", r.RequestID, err)
	}
	b.Begin(tagPayload, false, false)
	b.Uint(0x01, r.RequestID)
	b.Bin(0x02, r.Hash)
	if r.HasLevel {
		b.Uint(0x03, r.Level)
	}
	b.End()
	return nil
}

// AggregationResponse answers one AggregationRequest (payload 0x02 of an
// aggregator response).
type AggregationResponse struct {
	RequestID uint64
	// Status is 0 on success (docs/design/formats.md#status-codes). An absent status reads as 0:
	// libksi makes it optional and recorded libksi responses omit it.
	Status       uint64
	ErrorMessage string // empty when absent
	// SignatureElements are the raw bytes of the children with types
	// 0x801–0x806, in their order. Wrapped in a 0x800 element they form
	// the signature; the request id, status and message are not part of
	// it.
	SignatureElements [][]byte
	// Unknown holds unknown non-critical children, raw.
	Unknown [][]byte
}

func isAggregationResponseField(t uint16) bool {
	return t == 0x01 || t == 0x04 || t == 0x05 || (t >= 0x801 && t <= 0x806)
}

func parseAggregationResponse(e tlv.Element) (AggregationResponse, error) {
	var r AggregationResponse
	var hasID, hasStatus, hasMsg bool
	err := walk(e, func(c tlv.Element) (bool, error) {
		var err error
		switch {
		case c.Type == 0x01:
			if err = once(&hasID, "request id"); err == nil {
				r.RequestID, err = c.Uint()
			}
		case c.Type == 0x04:
			if err = once(&hasStatus, "status"); err == nil {
				r.Status, err = c.Uint()
			}
		case c.Type == 0x05:
			if err = once(&hasMsg, "error message"); err == nil {
				r.ErrorMessage, err = decodeString(c)
			}
		case isSignatureElement(c):
			r.SignatureElements = append(r.SignatureElements, c.Raw)
		default:
			return false, nil
		}
		return true, err
	}, &r.Unknown)
	if err != nil {
		return AggregationResponse{}, err
	}
	if !hasID {
		return AggregationResponse{}, errors.New("missing request id")
	}
	return r, nil
}

func (r *AggregationResponse) encode(b *tlv.Builder) error {
	if err := checkString(r.ErrorMessage); err != nil {
		return fmt.Errorf("aggregation response %d: error message: %w", r.RequestID, err)
	}
	for _, s := range r.SignatureElements {
		if err := rawElement(s, "signature element", isSignatureElement); err != nil {
			return fmt.Errorf("aggregation response %d: %w", r.RequestID, err)
		}
	}
	for _, u := range r.Unknown {
		if err := rawElement(u, "unknown element", nonCriticalExcept(isAggregationResponseField)); err != nil {
			return fmt.Errorf("aggregation response %d: %w", r.RequestID, err)
		}
	}
	b.Begin(tagPayload, false, false)
	b.Uint(0x01, r.RequestID)
	b.Uint(0x04, r.Status)
	if r.ErrorMessage != "" {
		b.UTF8(0x05, r.ErrorMessage)
	}
	for _, s := range r.SignatureElements {
		b.Raw(s)
	}
	for _, u := range r.Unknown {
		b.Raw(u)
	}
	b.End()
	return nil
}

// AggregatorRequest is a request PDU to an aggregator (0x220).
type AggregatorRequest struct {
	Envelope
	Requests []AggregationRequest
	// ConfigRequest is set when the PDU asks for the aggregator's
	// configuration (an empty 0x04 payload).
	ConfigRequest bool
	// Acks are raw acknowledgement request payloads (0x05).
	Acks [][]byte
	// Unknown holds unknown non-critical payloads, raw.
	Unknown [][]byte
}

func isAggregatorRequestPayload(t uint16) bool {
	return t == tagHeader || t == tagPayload || t == tagConfig || t == tagAck || t == tagHMAC
}

// ParseAggregatorRequest parses an aggregator request PDU. It does not
// check the HMAC; see [Envelope.Verify].
func ParseAggregatorRequest(b []byte) (*AggregatorRequest, error) {
	r := &AggregatorRequest{}
	c, err := parseRequest(b, TypeAggregatorRequest, "aggregator request", "aggregation request", parseAggregationRequest, &r.Requests, true)
	if err != nil {
		return nil, err
	}
	r.Envelope, r.ConfigRequest, r.Acks, r.Unknown = c.Envelope, c.ConfigRequest, c.Acks, c.Unknown
	return r, nil
}

// commonRequest holds what aggregator and extender requests share.
type commonRequest struct {
	Envelope
	ConfigRequest bool
	Acks          [][]byte
	Unknown       [][]byte
}

// parseRequest parses a request envelope of type typ whose 0x02 payloads
// are decoded by parseOne into *out; config requests, acks (where
// acksAllowed) and unknown non-critical payloads are the shared rest.
func parseRequest[T any](b []byte, typ uint16, where, what string, parseOne func(tlv.Element) (T, error), out *[]T, acksAllowed bool) (*commonRequest, error) {
	env, err := parseEnvelope(b, typ, false)
	if err != nil {
		return nil, err
	}
	c := &commonRequest{Envelope: env.Envelope}
	for _, p := range env.payloads {
		switch {
		case p.Type == tagPayload:
			x, err := parseOne(p)
			if err != nil {
				return nil, formatErr(where, fmt.Errorf("%s: %w", what, err))
			}
			*out = append(*out, x)
		case p.Type == tagConfig:
			if err := parseConfigRequest(p); err != nil {
				return nil, formatErr(where, fmt.Errorf("config request: %w", err))
			}
			c.ConfigRequest = true
		case p.Type == tagAck && acksAllowed:
			if err := checkAck(p); err != nil {
				return nil, formatErr(where, fmt.Errorf("ack: %w", err))
			}
			c.Acks = append(c.Acks, p.Raw)
		default:
			if !p.NonCritical {
				return nil, formatErr(where, fmt.Errorf("unknown critical payload %#x", p.Type))
			}
			c.Unknown = append(c.Unknown, p.Raw)
		}
	}
	if len(*out) == 0 && !c.ConfigRequest && len(c.Acks) == 0 {
		return nil, formatErr(where, errors.New("no payload"))
	}
	return c, nil
}

// Encode writes the request with its header and payloads and an HMAC
// computed with alg and key. Raw and HMAC of r are ignored and not
// changed.
func (r *AggregatorRequest) Encode(alg ksi.HashAlg, key []byte) ([]byte, error) {
	if len(r.Requests) == 0 && !r.ConfigRequest && len(r.Acks) == 0 {
		return nil, errors.New("pdu: aggregator request: no payload")
	}
	size := 0
	for _, a := range r.Acks {
		size += len(a)
	}
	for _, u := range r.Unknown {
		size += len(u)
	}
	size += len(r.Requests) * (16 + ksi.SHA2_512.Size())
	return encodeEnvelope(TypeAggregatorRequest, &r.Header, alg, key, size, func(b *tlv.Builder) error {
		for i := range r.Requests {
			if err := r.Requests[i].encode(b); err != nil {
				return err
			}
		}
		if r.ConfigRequest {
			b.Element(tagConfig, false, false, nil)
		}
		return encodeRawPayloads(b, r.Acks, r.Unknown, isAggregatorRequestPayload)
	})
}

// encodeRawPayloads appends the ack and unknown payloads, checked.
func encodeRawPayloads(b *tlv.Builder, acks, unknown [][]byte, known func(uint16) bool) error {
	for _, a := range acks {
		if err := rawElement(a, "ack", isAck); err != nil {
			return err
		}
		b.Raw(a)
	}
	for _, u := range unknown {
		if err := rawElement(u, "unknown payload", nonCriticalExcept(known)); err != nil {
			return err
		}
		b.Raw(u)
	}
	return nil
}

// AggregatorResponse is a response PDU from an aggregator (0x221). A bare
// error response has only Error set: no Header, no HMAC.
type AggregatorResponse struct {
	Envelope
	Responses []AggregationResponse
	// Error is a whole-message error element (0x03), if any.
	Error *ErrorPayload
	// Config is the aggregator's configuration, if sent.
	Config *Config
	// Acks are raw acknowledgement payloads (0x05).
	Acks [][]byte
	// Unknown holds unknown non-critical payloads, raw.
	Unknown [][]byte
}

func isResponsePayload(t uint16) bool {
	return t == tagHeader || t == tagPayload || t == tagError || t == tagConfig || t == tagAck || t == tagHMAC
}

// ParseAggregatorResponse parses an aggregator response PDU, including a
// bare error response. It does not check the HMAC; see [Envelope.Verify].
func ParseAggregatorResponse(b []byte) (*AggregatorResponse, error) {
	r := &AggregatorResponse{}
	c, err := parseResponse(b, TypeAggregatorResponse, "aggregator response", "aggregation response", parseAggregationResponse, &r.Responses)
	if err != nil {
		return nil, err
	}
	r.Envelope, r.Error, r.Config, r.Acks, r.Unknown = c.Envelope, c.Error, c.Config, c.Acks, c.Unknown
	return r, nil
}

// commonResponse holds what aggregator and extender responses share.
type commonResponse struct {
	Envelope
	Error   *ErrorPayload
	Config  *Config
	Acks    [][]byte
	Unknown [][]byte
}

// parseResponse parses a response envelope of type typ whose 0x02
// payloads are decoded by parseOne into *out; the other payloads are the
// ones both services share.
func parseResponse[T any](b []byte, typ uint16, where, what string, parseOne func(tlv.Element) (T, error), out *[]T) (*commonResponse, error) {
	env, err := parseEnvelope(b, typ, true)
	if err != nil {
		return nil, err
	}
	c := &commonResponse{Envelope: env.Envelope, Error: env.bare}
	if env.bare != nil {
		return c, nil
	}
	for _, p := range env.payloads {
		switch p.Type {
		case tagPayload:
			x, err := parseOne(p)
			if err != nil {
				return nil, formatErr(where, fmt.Errorf("%s: %w", what, err))
			}
			*out = append(*out, x)
		default:
			if err := parseCommonResponsePayload(p, &c.Error, &c.Config, &c.Acks, &c.Unknown); err != nil {
				return nil, formatErr(where, err)
			}
		}
	}
	if len(*out) == 0 && c.Error == nil && c.Config == nil && len(c.Acks) == 0 {
		return nil, formatErr(where, errors.New("no payload"))
	}
	return c, nil
}

// parseCommonResponsePayload handles the payloads aggregator and extender
// responses share: error, config, ack and unknown ones.
func parseCommonResponsePayload(p tlv.Element, errp **ErrorPayload, conf **Config, acks, unknown *[][]byte) error {
	switch p.Type {
	case tagError:
		if *errp != nil {
			return errors.New("repeated error element")
		}
		e, err := parseErrorPayload(p)
		if err != nil {
			return fmt.Errorf("error element: %w", err)
		}
		*errp = &e
	case tagConfig:
		if *conf != nil {
			return errors.New("repeated config")
		}
		c, err := parseConfig(p)
		if err != nil {
			return fmt.Errorf("config: %w", err)
		}
		*conf = &c
	case tagAck:
		if err := checkAck(p); err != nil {
			return fmt.Errorf("ack: %w", err)
		}
		*acks = append(*acks, p.Raw)
	default:
		if !p.NonCritical {
			return fmt.Errorf("unknown critical payload %#x", p.Type)
		}
		*unknown = append(*unknown, p.Raw)
	}
	return nil
}

// Encode writes the response with its header, payloads (aggregation
// responses, error, config, acks, unknown payloads, in that order) and an
// HMAC computed with alg and key, which must be the algorithm of the
// request. Signature elements are embedded unchanged. Raw and HMAC of r
// are ignored and not changed. A bare error response is written with
// EncodeErrorPDU instead.
func (r *AggregatorResponse) Encode(alg ksi.HashAlg, key []byte) ([]byte, error) {
	if len(r.Responses) == 0 && r.Error == nil && r.Config == nil && len(r.Acks) == 0 {
		return nil, errors.New("pdu: aggregator response: no payload")
	}
	size := 0
	for i := range r.Responses {
		size += 32 + len(r.Responses[i].ErrorMessage)
		for _, s := range r.Responses[i].SignatureElements {
			size += len(s)
		}
		for _, u := range r.Responses[i].Unknown {
			size += len(u)
		}
	}
	return encodeEnvelope(TypeAggregatorResponse, &r.Header, alg, key, size, func(b *tlv.Builder) error {
		for i := range r.Responses {
			if err := r.Responses[i].encode(b); err != nil {
				return err
			}
		}
		return encodeCommonResponsePayloads(b, r.Error, r.Config, r.Acks, r.Unknown)
	})
}

func encodeCommonResponsePayloads(b *tlv.Builder, e *ErrorPayload, c *Config, acks, unknown [][]byte) error {
	if e != nil {
		if err := e.encode(b); err != nil {
			return err
		}
	}
	if c != nil {
		if err := c.encode(b); err != nil {
			return err
		}
	}
	return encodeRawPayloads(b, acks, unknown, isResponsePayload)
}
