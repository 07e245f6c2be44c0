package aggregator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"

	"github.com/tempel-ksi/tempel/internal/server"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/pdu"
	"github.com/tempel-ksi/tempel/ksi/tlv"
)

// Status maps an engine error to a KSI status code (ksi-spec §8.5).
func Status(err error) uint64 {
	switch {
	case err == nil:
		return pdu.StatusOK
	case errors.Is(err, ErrLevelTooHigh):
		return pdu.StatusAggrRequestTooLarge
	case errors.Is(err, ErrOverQuota):
		return pdu.StatusAggrOverQuota
	case errors.Is(err, ErrOverloaded):
		return pdu.StatusAggrTooManyRequests
	case errors.Is(err, ErrBadRequest):
		return pdu.StatusInvalidPayload
	case errors.Is(err, ErrUpstreamTime):
		return pdu.StatusUpstreamTimeout
	case errors.Is(err, ErrUpstream), errors.Is(err, ErrStopped):
		return pdu.StatusUpstreamError
	}
	return pdu.StatusInternalError
}

// PDUHandler serves KSI PDU v2 signing (POST /gt-signingservice) for
// clients built on the reference SDKs. Each request of a PDU joins the
// current round with the user's login as its client id.
//
// A PDU with more aggregation requests than one response PDU can answer
// (maxRequests, advertised as the configuration's max requests) is
// refused as a whole with status 0x103 before any of its hashes is
// signed.
//
// The same answers are given over raw TCP (ksi+tcp) through the returned
// endpoint's AnswerPDU.
func (e *Engine) PDUHandler(users server.PDUAuthenticator) server.PDUEndpoint {
	h := &pduSigner{e: e}
	return &server.PDUService[*pdu.AggregatorRequest]{ReqType: pdu.TypeAggregatorRequest, RespType: pdu.TypeAggregatorResponse,
		Parse: pdu.ParseAggregatorRequest, Envelope: func(q *pdu.AggregatorRequest) *pdu.Envelope { return &q.Envelope },
		Answer: h.answer, Refuse: server.RefuseAggregatorPDU, Users: users}
}

type pduSigner struct {
	e *Engine
	// over is by how many bytes real answers have exceeded responseBound.
	// It stays 0 while the bound holds; if the bound proves wrong, it
	// lowers the limit from then on, and the mismatch is logged at ERROR.
	over atomic.Int64
}

// maxRequests is how many aggregation requests one PDU by login may carry.
func (h *pduSigner) maxRequests(login string) int {
	return pdu.MaxResponses(login, h.e.responseBound(login)+int(h.over.Load()))
}

// answer signs the requests of an authenticated PDU; key is the user's
// key. It returns the response PDU and its HTTP status, or nil when ctx
// ended first (the client went away).
func (h *pduSigner) answer(ctx context.Context, req *pdu.AggregatorRequest, key []byte) ([]byte, int) {
	login := req.Header.LoginID
	resp := &pdu.AggregatorResponse{Envelope: pdu.Envelope{Header: pdu.Header{LoginID: login}}}
	if req.ConfigRequest {
		resp.Config = h.config(login)
	}
	if limit := h.maxRequests(login); len(req.Requests) > limit {
		resp.Error = &pdu.ErrorPayload{Status: pdu.StatusInvalidPayload, Message: fmt.Sprintf(
			"aggregator: %d aggregation requests in one PDU, at most %d fit in a response (the configuration's max requests); nothing was signed",
			len(req.Requests), limit)}
		return h.encode(resp, req.HMAC.Alg(), key, http.StatusRequestEntityTooLarge)
	}
	results := h.sign(ctx, req)
	if results == nil {
		return nil, 0 // the client went away
	}
	for i, ar := range req.Requests {
		x := results[i]
		out := pdu.AggregationResponse{RequestID: ar.RequestID, Status: Status(x.Err)}
		var err error
		if x.Err != nil {
			out.ErrorMessage = pdu.TruncateMessage(x.Err.Error())
		} else if out.SignatureElements, err = signatureElements(x.Signature); err != nil {
			out.Status, out.ErrorMessage = pdu.StatusInternalError, pdu.TruncateMessage(err.Error())
		}
		resp.Responses = append(resp.Responses, out)
	}
	h.fit(resp, req.HMAC.Alg())
	return h.encode(resp, req.HMAC.Alg(), key, http.StatusOK)
}

// sign submits the PDU's requests and waits for their results; nil when
// the client went away meanwhile.
func (h *pduSigner) sign(ctx context.Context, req *pdu.AggregatorRequest) []Result {
	// Each request waits as a caller: it takes its part in its round's
	// turn, like a gRPC Sign call.
	callers := make([]*caller, len(req.Requests))
	results := make([]Result, len(req.Requests))
	for i, ar := range req.Requests {
		sr := Request{Hash: ar.Hash, Identity: Identity{ClientID: req.Header.LoginID, Sequence: ar.RequestID, HasSequence: true}}
		if ar.HasLevel {
			if ar.Level > 0xFF {
				results[i].Err = ErrLevelTooHigh
				continue
			}
			sr.Level = byte(ar.Level)
		}
		callers[i], results[i].Err = h.e.submitCaller(sr)
	}
	// Every result is picked up before any response is built, so the next
	// round need not wait for this one's encoding; a client that goes
	// away leaves every caller at once (its context being done).
	for i, c := range callers {
		if c != nil {
			results[i] = c.wait(ctx)
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return results
}

// config is the configuration the aggregator advertises to login.
func (h *pduSigner) config(login string) *pdu.Config {
	c := h.e.cfg
	n := h.maxRequests(login)
	if c.Quota > 0 {
		n = min(n, c.Quota)
	}
	return &pdu.Config{
		MaxLevel: uint64(c.MaxLevel), HasMaxLevel: true,
		AggregationAlgorithm: ksi.SHA2_256, HasAggregationAlgorithm: true,
		AggregationPeriodMS: uint64(c.Period.Milliseconds()), HasAggregationPeriodMS: true,
		MaxRequests: uint64(n), HasMaxRequests: true,
	}
}

// errNoRoom is the answer to a signed request whose signature did not fit
// in the response PDU: the bound behind maxRequests was wrong.
const errNoRoom = "aggregator: the signature did not fit in the response PDU; send fewer requests per PDU"

// fit is the safety net behind maxRequests: should the answers outgrow
// responseBound, it raises the bound for later PDUs, and if this response
// would not fit in one PDU it answers the requests that fit and gives the
// others status 0x200, rather than losing every answer. Both are logged
// at ERROR: they mean the bound is wrong.
func (h *pduSigner) fit(resp *pdu.AggregatorResponse, alg ksi.HashAlg) {
	login := resp.Header.LoginID
	bound := h.e.responseBound(login)
	fixed := 0 // config and error payloads
	if resp.Config != nil {
		fixed += resp.Config.EncodedLen()
	}
	if resp.Error != nil {
		fixed += resp.Error.EncodedLen()
	}
	total, largest := fixed, 0
	for i := range resp.Responses {
		n := resp.Responses[i].EncodedLen()
		total += n
		largest = max(largest, n)
	}
	if h.raiseOver(int64(largest - bound)) {
		h.e.log.Error("aggregator: a PDU answer exceeded its size bound; fewer requests per PDU are accepted from now on",
			"answer_bytes", largest, "bound_bytes", bound, "login", login, "max_requests", h.maxRequests(login))
	}
	if pdu.ResponseLen(&resp.Header, alg, total) <= pdu.MaxSize {
		return
	}
	// Keep signed answers in order while the rest, as errors, still fit.
	room := pdu.MaxSize - pdu.ResponseLen(&resp.Header, alg, fixed)
	noRoom := func(r *pdu.AggregationResponse) pdu.AggregationResponse {
		return pdu.AggregationResponse{RequestID: r.RequestID, Status: pdu.StatusInternalError, ErrorMessage: errNoRoom}
	}
	lost := pdu.FitAnswers(resp.Responses, room,
		func(r *pdu.AggregationResponse) bool { return r.SignatureElements != nil }, noRoom)
	h.e.log.Error("aggregator: signed requests could not be answered: the response PDU is full",
		"lost", lost, "requests", len(resp.Responses), "login", login, "bound_bytes", bound, "largest_answer_bytes", largest)
}

// raiseOver raises over to n; it reports whether n was higher.
func (h *pduSigner) raiseOver(n int64) bool {
	for {
		cur := h.over.Load()
		if n <= cur {
			return false
		}
		if h.over.CompareAndSwap(cur, n) {
			return true
		}
	}
}

// encode encodes resp, to be sent with HTTP status code.
func (h *pduSigner) encode(resp *pdu.AggregatorResponse, alg ksi.HashAlg, key []byte, code int) ([]byte, int) {
	b, err := resp.Encode(alg, key)
	if err != nil {
		h.e.log.Error("aggregator: could not encode a PDU response", "err", err, "responses", len(resp.Responses))
		return server.ErrorPDU(pdu.TypeAggregatorResponse, pdu.StatusInternalError, "could not encode the response"), http.StatusInternalServerError
	}
	return b, code
}

// signatureElements splits a signature into the elements an aggregation
// response carries (ksi-spec §8.3): the children of the 0x800 element.
func signatureElements(sig []byte) ([][]byte, error) {
	e, err := tlv.ReadOne(sig)
	if err != nil {
		return nil, err
	}
	children, err := e.Children()
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(children))
	for i, c := range children {
		out[i] = c.Raw
	}
	return out, nil
}
