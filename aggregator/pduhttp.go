package aggregator

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"

	"github.com/tempel-ksi/tempel/internal/server"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/pdu"
	"github.com/tempel-ksi/tempel/ksi/tlv"
)

// PDUHandler serves KSI PDU v2 signing (POST /gt-signingservice and
// ksi+tcp) for clients built on the reference SDKs: the endpoint reads
// and authenticates the PDU, and the engine's PDUSigner answers it, so
// HTTP and raw TCP give the same answers.
func (e *Engine) PDUHandler(users server.PDUAuthenticator) server.PDUEndpoint {
	p := e.PDU()
	return &server.PDUService[*pdu.AggregatorRequest]{ReqType: pdu.TypeAggregatorRequest, RespType: pdu.TypeAggregatorResponse,
		Parse: pdu.ParseAggregatorRequest, Envelope: func(q *pdu.AggregatorRequest) *pdu.Envelope { return &q.Envelope },
		Answer: func(ctx context.Context, req *pdu.AggregatorRequest, key []byte) ([]byte, int) {
			b, code, ok := p.Respond(ctx, req, key)
			if !ok {
				return nil, 0 // the client went away
			}
			return b, code
		},
		Refuse: server.RefuseAggregatorPDU, Users: users}
}

// PDUSigner answers KSI PDU v2 aggregator requests, whatever carries
// them (HTTP, raw TCP). Each request of a PDU joins the current round
// with the user's login as its client id.
//
// A PDU with more aggregation requests than one response PDU can answer
// (maxRequests, advertised as the configuration's max requests) is
// refused as a whole with status 0x103 before any of its hashes is
// signed.
type PDUSigner struct {
	e *Engine
	// over is by how many bytes real answers have exceeded responseBound.
	// It stays 0 while the bound holds; if the bound proves wrong, it
	// lowers the limit from then on, and the mismatch is logged at ERROR.
	over atomic.Int64
}

// PDU returns the engine's PDU signer: one per engine, so that every
// transport shares what it learns about response sizes.
func (e *Engine) PDU() *PDUSigner { return e.pdu }

// maxRequests is how many aggregation requests one PDU by login may carry.
func (h *PDUSigner) maxRequests(login string) int {
	return pdu.MaxResponses(login, h.e.responseBound(login)+int(h.over.Load()))
}

// Respond answers an aggregator request PDU whose login and HMAC the
// caller has checked (key is the login's HMAC key). It returns the
// encoded response PDU, HMAC'd with key and the request's algorithm, and
// the HTTP status that goes with it: 200; 413 for a PDU with more
// requests than one response carries; 500 (with an error PDU) when the
// response could not be encoded. ok is false when ctx ended before the
// requests were answered: the client has gone, nothing is to be sent.
//
// A response to a request at level L > 0 is relative to the request, as
// the reference clients expect (docs/design/formats.md#level-corrections): its lowest chain's first
// level correction is L less than in the finished signature, and the
// client adds L back.
func (h *PDUSigner) Respond(ctx context.Context, req *pdu.AggregatorRequest, key []byte) (resp []byte, code int, ok bool) {
	login := req.Header.LoginID
	out := &pdu.AggregatorResponse{Envelope: pdu.Envelope{Header: pdu.Header{LoginID: login}}}
	if req.ConfigRequest {
		out.Config = h.config(login)
	}
	if limit := h.maxRequests(login); len(req.Requests) > limit {
		out.Error = &pdu.ErrorPayload{Status: pdu.StatusInvalidPayload, Message: fmt.Sprintf(
			"aggregator: %d aggregation requests in one PDU, at most %d fit in a response (the configuration's max requests); nothing was signed",
			len(req.Requests), limit)}
		b, code := h.encode(out, req.HMAC.Alg(), key, http.StatusRequestEntityTooLarge)
		return b, code, true
	}
	results := h.sign(ctx, req)
	if results == nil {
		return nil, 0, false
	}
	for i, ar := range req.Requests {
		out.Responses = append(out.Responses, answer(ar, results[i]))
	}
	h.fit(out, req.HMAC.Alg())
	b, code := h.encode(out, req.HMAC.Alg(), key, http.StatusOK)
	return b, code, true
}

// answer is the aggregation response to ar from its result: the
// signature's elements relative to the request's level, or the refusal.
func answer(ar pdu.AggregationRequest, x Signed) pdu.AggregationResponse {
	out := pdu.AggregationResponse{RequestID: ar.RequestID, Status: Status(x.Err)}
	if x.Err != nil {
		out.ErrorMessage = pdu.TruncateMessage(x.Err.Error())
		return out
	}
	sig, err := ksi.ShiftInputLevel(x.Signature, -int(ar.Level))
	if err == nil {
		out.SignatureElements, err = signatureElements(sig)
	}
	if err != nil {
		out.Status, out.ErrorMessage = pdu.StatusInternalError, pdu.TruncateMessage("aggregator: "+err.Error())
	}
	return out
}

// sign submits the PDU's requests and waits for their results; nil when
// the client went away meanwhile.
func (h *PDUSigner) sign(ctx context.Context, req *pdu.AggregatorRequest) []Signed {
	// Each request waits as a caller: it takes its part in its round's
	// turn, like a gRPC Sign call.
	callers := make([]*caller, len(req.Requests))
	results := make([]Signed, len(req.Requests))
	for i, ar := range req.Requests {
		sr := Request{Hash: ar.Hash, Identity: Identity{ClientID: req.Header.LoginID, Sequence: ar.RequestID, HasSequence: true}}
		if ar.HasLevel {
			if ar.Level > 0xFF {
				results[i].Err = fmt.Errorf("%w: level %d, maximum %d", ErrLevelTooHigh, ar.Level, h.e.cfg.MaxLevel)
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
func (h *PDUSigner) config(login string) *pdu.Config {
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
func (h *PDUSigner) fit(resp *pdu.AggregatorResponse, alg ksi.HashAlg) {
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
func (h *PDUSigner) raiseOver(n int64) bool {
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

// encode encodes resp with code, or, should that fail, an error PDU
// with 500.
func (h *PDUSigner) encode(resp *pdu.AggregatorResponse, alg ksi.HashAlg, key []byte, code int) ([]byte, int) {
	b, err := resp.Encode(alg, key)
	if err == nil {
		return b, code
	}
	h.e.log.Error("aggregator: could not encode a PDU response", "err", err, "responses", len(resp.Responses))
	if b, err = pdu.EncodeErrorPDU(pdu.TypeAggregatorResponse, pdu.ErrorPayload{Status: pdu.StatusInternalError, Message: "could not encode the response"}); err != nil {
		return nil, http.StatusInternalServerError // cannot happen: a fixed, short error PDU
	}
	return b, http.StatusInternalServerError
}

// signatureElements splits a signature into the elements an aggregation
// response carries (docs/design/formats.md#aggregation): the children of the 0x800 element.
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
