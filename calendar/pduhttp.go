package calendar

import (
	"errors"
	"net/http"

	"github.com/tempel-ksi/tempel/internal/server"
	"github.com/tempel-ksi/tempel/ksi/pdu"
)

// ExtenderPDUHandler serves KSI PDU v2 extending (POST
// /gt-extendingservice) for clients built on the reference SDKs.
func (s *Service) ExtenderPDUHandler(users server.PDUAuthenticator) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, key, ok := server.ReadAuthenticatedPDU(w, r, users, pdu.TypeExtenderResponse, pdu.ParseExtenderRequest,
			func(q *pdu.ExtenderRequest) *pdu.Envelope { return &q.Envelope })
		if !ok {
			return
		}
		resp := &pdu.ExtenderResponse{Envelope: pdu.Envelope{Header: pdu.Header{LoginID: req.Header.LoginID}}}
		first, last, has := s.cfg.Store.Head()
		for _, er := range req.Requests {
			out := pdu.ExtendResponse{RequestID: er.RequestID, CalendarLastTime: last, HasCalendarLastTime: has}
			pub := uint64(0)
			if er.HasPublicationTime {
				pub = er.PublicationTime
			}
			if er.HasPublicationTime && pub > uint64(s.cfg.Now().Unix()) {
				out.Status, out.ErrorMessage = pdu.StatusExtTimeInFuture, "publication time is in the future"
			} else if ch, _, err := s.Extend(er.AggregationTime, pub); err != nil {
				out.Status, out.ErrorMessage = extendStatus(err), err.Error()
			} else {
				out.CalendarChain = ch.Raw
			}
			resp.Responses = append(resp.Responses, out)
		}
		if req.ConfigRequest {
			resp.Config = &pdu.Config{CalendarFirstTime: first, HasCalendarFirstTime: has, CalendarLastTime: last, HasCalendarLastTime: has}
		}
		b, err := resp.Encode(req.HMAC.Alg(), key)
		if err != nil {
			server.WritePDUError(w, pdu.TypeExtenderResponse, pdu.StatusInternalError, "could not encode the response", http.StatusInternalServerError)
			return
		}
		server.WritePDU(w, b, http.StatusOK)
	})
}

// extendStatus maps extending errors to the status codes of ksi-spec §8.5.
func extendStatus(err error) uint64 {
	switch {
	case errors.Is(err, ErrBadRange):
		return pdu.StatusExtInvalidTimeRange
	case errors.Is(err, ErrTimeTooOld):
		return pdu.StatusExtTimeTooOld
	case errors.Is(err, ErrTimeTooNew), errors.Is(err, ErrEmpty):
		return pdu.StatusExtTimeTooNew
	case errors.Is(err, ErrCorrupt):
		return pdu.StatusExtDatabaseCorrupt
	case errors.Is(err, ErrFailed):
		return pdu.StatusExtDatabaseMissing
	}
	return pdu.StatusInternalError
}
