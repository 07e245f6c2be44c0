package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"

	"github.com/tempel-ksi/tempel/aggregator"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/tsa"
	"github.com/tempel-ksi/tempel/tsp"
)

// The RFC 3161 front door (docs/design/rfc3161.md): POST /tsa takes a DER
// TimeStampReq and answers a TimeStampResp whose token is also a KSI
// signature from the node's own rounds. It is behind the same
// authentication, quotas and memory budget as every signing request.

// withTSA serves POST /tsa with the TSA key of the node's keys; without
// one the route answers a rejection saying why.
func (n *Node) withTSA() error {
	var signer *tsp.Signer
	var missing error
	switch {
	case n.keys == nil:
		missing = errors.New("this node has no keys")
	case n.cfg.TSACert != "":
		if err := n.keys.UseTSAWith(n.cfg.TSACert, n.cfg.TSAKey, n.cfg.Keys.OpenKey); err != nil {
			return fmt.Errorf("tsa: %w", err)
		}
		fallthrough
	default:
		signer, missing = n.keys.TSASigner(n.cfg.TSAPolicies...)
	}
	if missing != nil {
		n.log.Info("RFC 3161 front door off: no TSA key", "why", missing.Error())
		n.h.routes = append(n.h.routes, route{"/tsa", n.metrics.countHTTP("tsa", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeTSA(w, http.StatusServiceUnavailable, tsp.Rejection(&tsp.Failure{Info: tsp.SystemFailure, Text: "no TSA key: " + missing.Error()}))
		}))})
		return nil
	}
	signer.QCStatement = n.cfg.TSAQCStatement
	resp, err := tsa.New(tsa.Config{
		Signer:     signer,
		Aggregate:  n.aggregateForTSA,
		NextSecond: n.nextSecondForTSA,
		Metrics:    tsa.NewMetrics(n.reg),
		Logger:     n.log.With("service", "tsa"),
	})
	if err != nil {
		return err
	}
	n.h.routes = append(n.h.routes, route{"/tsa", n.metrics.countHTTP("tsa", tsaHandler(resp, n.h.admitsSign))})
	return nil
}

// aggregateForTSA signs a token's document in the node's rounds as the
// authenticated caller.
func (n *Node) aggregateForTSA(ctx context.Context, doc ksi.Imprint) ([]byte, uint64, error) {
	id := identityOf(ctx)
	res := n.h.signer.sign(ctx, aggregator.Request{Hash: doc, Identity: aggregator.Identity{ClientID: id.login, MachineID: id.machineID}})
	return res.sig, res.aggrTime, res.err
}

// nextSecondForTSA is the calendar second the round that takes a request
// now will be appended in.
func (n *Node) nextSecondForTSA() uint64 {
	return n.cal.OpenSecond(n.agg.NextClose())
}

// tsaContentTypes are what RFC 3161 clients send (the second is an old
// draft's).
var tsaContentTypes = map[string]bool{"application/timestamp-query": true, "application/timestamp-request": true}

// tsaHandler serves POST /tsa. A request the node has no memory for is
// refused before anything is drafted or signed: a key operation spent on
// a request then refused would let overload cost more CPU, not less.
func tsaHandler(resp *tsa.Responder, admits func() bool) http.Handler {
	overloaded := aggregator.ErrOverloaded
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			http.Error(w, "POST a DER TimeStampReq (Content-Type: application/timestamp-query)", http.StatusMethodNotAllowed)
			return
		}
		if ct := r.Header.Get("Content-Type"); ct != "" {
			if mt, _, err := mime.ParseMediaType(ct); err != nil || !tsaContentTypes[mt] {
				http.Error(w, "Content-Type "+ct+": want application/timestamp-query", http.StatusUnsupportedMediaType)
				return
			}
		}
		der, err := io.ReadAll(http.MaxBytesReader(w, r.Body, tsp.MaxRequestSize))
		if err != nil {
			writeTSA(w, http.StatusRequestEntityTooLarge, tsp.Rejection(&tsp.Failure{Info: tsp.BadDataFormat, Text: "request larger than 16 KiB or unreadable"}))
			return
		}
		if !admits() {
			writeTSA(w, aggregator.StatusOf(overloaded).HTTP, tsp.Rejection(&tsp.Failure{Info: tsp.SystemFailure, Text: "overloaded: too many requests waiting, try again shortly"}))
			return
		}
		body, err := resp.Respond(r.Context(), der)
		status := http.StatusOK
		if err != nil {
			status = aggregator.StatusOf(err).HTTP
			if errors.Is(err, tsa.ErrMissed) {
				status = http.StatusServiceUnavailable
			}
		}
		writeTSA(w, status, body)
	})
}

func writeTSA(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/timestamp-reply")
	w.WriteHeader(status)
	w.Write(body)
}
