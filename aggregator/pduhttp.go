package aggregator

import (
	"errors"
	"net/http"

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
func (e *Engine) PDUHandler(users server.PDUAuthenticator) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, key, ok := server.ReadAuthenticatedPDU(w, r, users, pdu.TypeAggregatorResponse, pdu.ParseAggregatorRequest,
			func(q *pdu.AggregatorRequest) *pdu.Envelope { return &q.Envelope })
		if !ok {
			return
		}
		resp := &pdu.AggregatorResponse{Envelope: pdu.Envelope{Header: pdu.Header{LoginID: req.Header.LoginID}}}
		// Each request waits as a caller: it takes its part in its
		// round's turn, like a gRPC Sign call.
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
			callers[i], results[i].Err = e.submitCaller(sr)
		}
		// Every result is picked up before any response is built, so the
		// next round need not wait for this one's encoding; a client that
		// goes away leaves every caller at once (its context being done).
		ctx := r.Context()
		for i, c := range callers {
			if c != nil {
				results[i] = c.wait(ctx)
			}
		}
		if ctx.Err() != nil {
			return
		}
		for i, ar := range req.Requests {
			x := results[i]
			out := pdu.AggregationResponse{RequestID: ar.RequestID, Status: Status(x.Err)}
			var err error
			if x.Err != nil {
				out.ErrorMessage = x.Err.Error()
			} else if out.SignatureElements, err = signatureElements(x.Signature); err != nil {
				out.Status, out.ErrorMessage = pdu.StatusInternalError, err.Error()
			}
			resp.Responses = append(resp.Responses, out)
		}
		if req.ConfigRequest {
			c := e.cfg
			resp.Config = &pdu.Config{
				MaxLevel: uint64(c.MaxLevel), HasMaxLevel: true,
				AggregationAlgorithm: ksi.SHA2_256, HasAggregationAlgorithm: true,
				AggregationPeriodMS: uint64(c.Period.Milliseconds()), HasAggregationPeriodMS: true,
				MaxRequests: uint64(c.MaxQueue), HasMaxRequests: true,
			}
			if c.Quota > 0 {
				resp.Config.MaxRequests = uint64(c.Quota)
			}
		}
		b, err := resp.Encode(req.HMAC.Alg(), key)
		if err != nil {
			server.WritePDUError(w, pdu.TypeAggregatorResponse, pdu.StatusInternalError, "could not encode the response", http.StatusInternalServerError)
			return
		}
		server.WritePDU(w, b, http.StatusOK)
	})
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
