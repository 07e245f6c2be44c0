package calendar

import (
	"context"
	"fmt"
	"math/bits"
	"net/http"

	"github.com/tempel-ksi/tempel/internal/server"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/pdu"
	"github.com/tempel-ksi/tempel/ksi/tlv"
)

// ExtenderPDUHandler serves KSI PDU v2 extending (POST
// /gt-extendingservice) for clients built on the reference SDKs.
//
// A PDU with more extension requests than one response PDU can answer
// (maxExtendRequests, advertised as the configuration's max requests) is
// refused as a whole with status 0x103 before any chain is computed.
//
// The same answers are given over raw TCP (ksi+tcp) through the returned
// endpoint's AnswerPDU.
func (s *Service) ExtenderPDUHandler(users server.PDUAuthenticator) server.PDUEndpoint {
	return &server.PDUService[*pdu.ExtenderRequest]{ReqType: pdu.TypeExtenderRequest, RespType: pdu.TypeExtenderResponse,
		Parse: pdu.ParseExtenderRequest, Envelope: func(q *pdu.ExtenderRequest) *pdu.Envelope { return &q.Envelope },
		Refuse: server.RefuseExtenderPDU, Users: users, Answer: s.answerExtenderPDU}
}

// answerExtenderPDU answers an authenticated extender request PDU; key is
// the user's key. It returns the response PDU and its HTTP status.
func (s *Service) answerExtenderPDU(_ context.Context, req *pdu.ExtenderRequest, key []byte) ([]byte, int) {
	login := req.Header.LoginID
	resp := &pdu.ExtenderResponse{Envelope: pdu.Envelope{Header: pdu.Header{LoginID: login}}}
	first, last, has := s.answeredHead()
	limit := maxExtendRequests(login, last)
	if req.ConfigRequest {
		resp.Config = &pdu.Config{CalendarFirstTime: first, HasCalendarFirstTime: has, CalendarLastTime: last, HasCalendarLastTime: has,
			MaxRequests: uint64(limit), HasMaxRequests: true}
	}
	if len(req.Requests) > limit {
		resp.Error = &pdu.ErrorPayload{Status: pdu.StatusInvalidPayload, Message: fmt.Sprintf(
			"calendar: %d extension requests in one PDU, at most %d fit in a response (the configuration's max requests)",
			len(req.Requests), limit)}
		return s.encodePDU(resp, req.HMAC.Alg(), key, http.StatusRequestEntityTooLarge)
	}
	for _, er := range req.Requests {
		resp.Responses = append(resp.Responses, s.extendOne(er, last, has))
	}
	s.fitPDU(resp, req.HMAC.Alg(), last)
	return s.encodePDU(resp, req.HMAC.Alg(), key, http.StatusOK)
}

// extendOne answers one extension request.
func (s *Service) extendOne(er pdu.ExtendRequest, last uint64, has bool) pdu.ExtendResponse {
	out := pdu.ExtendResponse{RequestID: er.RequestID, CalendarLastTime: last, HasCalendarLastTime: has}
	pub := uint64(0)
	if er.HasPublicationTime {
		pub = er.PublicationTime
	}
	if ch, _, err := s.Extend(er.AggregationTime, pub); err != nil {
		out.Status, out.ErrorMessage = StatusOf(err).KSI, pdu.TruncateMessage(err.Error())
	} else {
		out.CalendarChain = ch.Raw
	}
	return out
}

// The bound behind maxExtendRequests. A calendar chain from leaf t to the
// root over seconds 0..p has at most bits.Len(p+1) links: the tree over
// N = p+1 leaves is the perfect subtrees of N's binary digits; the chain
// climbs t's subtree (one link per level of its height h), takes one link
// for the fold of the smaller subtrees on its right, if any, and one per
// larger subtree on its left, and the larger subtrees are set digits of N
// above digit h. So 32 links for any second before 2^32 (the year 2106).
const (
	calendarLinksBefore2106 = 32
	calendarLinkLen         = 2 + 1 + 32 // a TLV8 holding a SHA-256 imprint
	uintElemMax             = 2 + 8      // an integer element of any value
)

// calendarChainMax is the most a calendar chain (0x802) to a root at or
// before second last takes: publication and aggregation times, input
// hash, links.
func calendarChainMax(last uint64) int {
	links := max(calendarLinksBefore2106, bits.Len64(last+1))
	n := 2*uintElemMax + 2 + 1 + 32 + links*calendarLinkLen
	return tlv.HeaderSize(ksi.TypeCalendarChain, n) + n
}

// extendResponseMax is the most one extension response takes, with a
// chain or with an error message (cut by pdu.TruncateMessage).
func extendResponseMax(last uint64) int {
	return pdu.MaxExtendResponseLen(max(calendarChainMax(last), pdu.MaxErrorMessageLen+4))
}

// maxExtendRequests is how many extension requests one PDU by login may
// carry while the calendar's newest second is last.
func maxExtendRequests(login string, last uint64) int {
	return pdu.MaxResponses(login, extendResponseMax(last))
}

// errNoRoomExtend answers a request whose chain did not fit in the
// response PDU.
const errNoRoomExtend = "calendar: the calendar chain did not fit in the response PDU; send fewer requests per PDU"

// fitPDU is the safety net behind maxExtendRequests: should this response
// not fit in one PDU, it answers the requests that fit and gives the
// others status 0x200 rather than failing them all, and logs at ERROR
// (the bound is wrong).
func (s *Service) fitPDU(resp *pdu.ExtenderResponse, alg ksi.HashAlg, last uint64) {
	fixed := 0
	if resp.Config != nil {
		fixed += resp.Config.EncodedLen()
	}
	total, largest := fixed, 0
	for i := range resp.Responses {
		n := resp.Responses[i].EncodedLen()
		total += n
		largest = max(largest, n)
	}
	if bound := extendResponseMax(last); largest > bound {
		s.log.Error("calendar: an extension answer exceeded its size bound", "answer_bytes", largest, "bound_bytes", bound)
	}
	if pdu.ResponseLen(&resp.Header, alg, total) <= pdu.MaxSize {
		return
	}
	room := pdu.MaxSize - pdu.ResponseLen(&resp.Header, alg, fixed)
	noRoom := func(r *pdu.ExtendResponse) pdu.ExtendResponse {
		return pdu.ExtendResponse{RequestID: r.RequestID, Status: pdu.StatusInternalError, ErrorMessage: errNoRoomExtend,
			CalendarLastTime: r.CalendarLastTime, HasCalendarLastTime: r.HasCalendarLastTime}
	}
	lost := pdu.FitAnswers(resp.Responses, room,
		func(r *pdu.ExtendResponse) bool { return r.CalendarChain != nil }, noRoom)
	s.log.Error("calendar: extension requests could not be answered: the response PDU is full",
		"unanswered", lost, "requests", len(resp.Responses), "login", resp.Header.LoginID)
}

// encodePDU encodes resp, to be sent with HTTP status code.
func (s *Service) encodePDU(resp *pdu.ExtenderResponse, alg ksi.HashAlg, key []byte, code int) ([]byte, int) {
	b, err := resp.Encode(alg, key)
	if err != nil {
		s.log.Error("calendar: could not encode a PDU response", "err", err, "responses", len(resp.Responses))
		return server.ErrorPDU(pdu.TypeExtenderResponse, pdu.StatusInternalError, "could not encode the response"), http.StatusInternalServerError
	}
	return b, code
}
