package server

import (
	"context"
	"net/http"

	"github.com/tempel-ksi/tempel/ksi/pdu"
)

// PDUAuth authenticates the envelope of a request PDU as it arrived on
// its transport; it returns the user's key, with which the response's
// HMAC is made.
type PDUAuth func(env *pdu.Envelope) (key []byte, err error)

// PDUEndpoint is a KSI PDU v2 service (signing or extending) as every
// transport sees it: HTTP through ServeHTTP, raw TCP ([KSITCP]) through
// AnswerPDU. Both reach the same answer, so a PDU gets the same response
// bytes on either.
type PDUEndpoint interface {
	http.Handler
	// RequestType is the request PDU type the endpoint answers (0x220 or
	// 0x320), ResponseType the type of its answers (0x221 or 0x321).
	RequestType() uint16
	ResponseType() uint16
	// AnswerPDU parses body, authenticates it with auth and answers it:
	// the response PDU and the HTTP status the same answer has over HTTP.
	// It returns nil when ctx ended before the answer was ready (the
	// client went away).
	AnswerPDU(ctx context.Context, body []byte, auth PDUAuth) ([]byte, int)
	// RefusePDU answers body, authenticated with auth, without doing its
	// work: every request in it gets status (with msg), in a response
	// made with the user's key so that the client can match each refusal
	// to its request. A PDU that cannot be parsed or authenticated gets
	// the bare error PDU AnswerPDU would send.
	RefusePDU(body []byte, auth PDUAuth, status uint64, msg string) ([]byte, int)
}

// PDUService is a [PDUEndpoint] made of a service's parsing and answering
// functions: the service says what a request means, the transports only
// carry bytes.
type PDUService[T any] struct {
	ReqType, RespType uint16
	// Parse parses a request PDU; Envelope returns its envelope.
	Parse    func([]byte) (T, error)
	Envelope func(T) *pdu.Envelope
	// Answer answers an authenticated request; key is the user's key. It
	// returns the response PDU and its HTTP status, or nil when ctx ended
	// first.
	Answer func(ctx context.Context, req T, key []byte) ([]byte, int)
	// Refuse answers every request of req with status and msg (see
	// [PDUEndpoint.RefusePDU]).
	Refuse func(req T, key []byte, status uint64, msg string) ([]byte, int)
	// Users authenticates HTTP requests.
	Users PDUAuthenticator
}

// RequestType implements [PDUEndpoint].
func (s *PDUService[T]) RequestType() uint16 { return s.ReqType }

// ResponseType implements [PDUEndpoint].
func (s *PDUService[T]) ResponseType() uint16 { return s.RespType }

// ServeHTTP answers one PDU in a POST body.
func (s *PDUService[T]) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, ok := ReadPDU(w, r, s.RespType)
	if !ok {
		return
	}
	auth := func(env *pdu.Envelope) ([]byte, error) { return s.Users.AuthenticatePDU(r, env) }
	if b, code := s.AnswerPDU(r.Context(), body, auth); b != nil {
		WritePDU(w, b, code)
	}
}

// AnswerPDU implements [PDUEndpoint].
func (s *PDUService[T]) AnswerPDU(ctx context.Context, body []byte, auth PDUAuth) ([]byte, int) {
	req, key, refusal, code := ParseAuthenticatedPDU(body, auth, s.RespType, s.Parse, s.Envelope)
	if refusal != nil {
		return refusal, code
	}
	return s.Answer(ctx, req, key)
}

// RefusePDU implements [PDUEndpoint].
func (s *PDUService[T]) RefusePDU(body []byte, auth PDUAuth, status uint64, msg string) ([]byte, int) {
	req, key, refusal, code := ParseAuthenticatedPDU(body, auth, s.RespType, s.Parse, s.Envelope)
	if refusal != nil {
		return refusal, code
	}
	return s.Refuse(req, key, status, msg)
}

// ParseAuthenticatedPDU parses body with parse and authenticates it with
// auth. On failure it returns the bare error PDU to answer with (0x101
// for an unparsable PDU, 0x102 for every authentication failure) and the
// HTTP status that goes with it.
func ParseAuthenticatedPDU[T any](body []byte, auth PDUAuth, respType uint16, parse func([]byte) (T, error),
	envelope func(T) *pdu.Envelope) (req T, key []byte, refusal []byte, code int) {
	req, err := parse(body)
	if err != nil {
		return req, nil, ErrorPDU(respType, pdu.StatusInvalidRequest, "invalid request: "+err.Error()), http.StatusBadRequest
	}
	if key, err = auth(envelope(req)); err != nil {
		return req, nil, ErrorPDU(respType, pdu.StatusAuthFailure, err.Error()), http.StatusUnauthorized
	}
	return req, key, nil, 0
}

// ErrorPDU is a bare error PDU (no header, no HMAC) of type respType.
// A message that cannot be encoded is cut to what can.
func ErrorPDU(respType uint16, status uint64, msg string) []byte {
	b, err := pdu.EncodeErrorPDU(respType, pdu.ErrorPayload{Status: status, Message: msg})
	if err != nil {
		b, err = pdu.EncodeErrorPDU(respType, pdu.ErrorPayload{Status: status, Message: pdu.TruncateMessage(msg)})
	}
	if err != nil {
		// Only a response type other than 0x221 or 0x321 gets here: a
		// programming error, answered as an aggregator error.
		b, _ = pdu.EncodeErrorPDU(pdu.TypeAggregatorResponse, pdu.ErrorPayload{Status: status})
	}
	return b
}

// RefuseAggregatorPDU answers every aggregation request of req with
// status and msg, in a response with the user's header and HMAC. A PDU
// without aggregation requests (a configuration request alone) gets an
// error payload instead. The HTTP status is 503.
func RefuseAggregatorPDU(req *pdu.AggregatorRequest, key []byte, status uint64, msg string) ([]byte, int) {
	msg = pdu.TruncateMessage(msg)
	resp := &pdu.AggregatorResponse{Envelope: pdu.Envelope{Header: pdu.Header{LoginID: req.Header.LoginID}}}
	for _, r := range req.Requests {
		resp.Responses = append(resp.Responses, pdu.AggregationResponse{RequestID: r.RequestID, Status: status, ErrorMessage: msg})
	}
	if len(resp.Responses) == 0 {
		resp.Error = &pdu.ErrorPayload{Status: status, Message: msg}
	}
	b, err := resp.Encode(req.HMAC.Alg(), key)
	if err != nil {
		return ErrorPDU(pdu.TypeAggregatorResponse, status, msg), http.StatusServiceUnavailable
	}
	return b, http.StatusServiceUnavailable
}

// RefuseExtenderPDU is [RefuseAggregatorPDU] for extension requests.
func RefuseExtenderPDU(req *pdu.ExtenderRequest, key []byte, status uint64, msg string) ([]byte, int) {
	msg = pdu.TruncateMessage(msg)
	resp := &pdu.ExtenderResponse{Envelope: pdu.Envelope{Header: pdu.Header{LoginID: req.Header.LoginID}}}
	for _, r := range req.Requests {
		resp.Responses = append(resp.Responses, pdu.ExtendResponse{RequestID: r.RequestID, Status: status, ErrorMessage: msg})
	}
	if len(resp.Responses) == 0 {
		resp.Error = &pdu.ErrorPayload{Status: status, Message: msg}
	}
	b, err := resp.Encode(req.HMAC.Alg(), key)
	if err != nil {
		return ErrorPDU(pdu.TypeExtenderResponse, status, msg), http.StatusServiceUnavailable
	}
	return b, http.StatusServiceUnavailable
}
