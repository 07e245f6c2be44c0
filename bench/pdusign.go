package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/pdu"
)

// ModePDU posts KSI PDU v2 aggregator requests, one aggregation request
// per PDU, to POST /gt-signingservice over keep-alive HTTP/1.1
// connections (at most HTTPConns) with the lean client h1pool. The PDU
// carries --user as its login id and is HMAC'd (SHA-256) with --key; the
// development credentials anon/anon when --user is empty. Every answer's
// HMAC and status are checked; status 0x106 (or 0x105) is a refusal.
const ModePDU = "pdu"

const pduPath = "/gt-signingservice"

// The credentials of KSI PDU clients in development mode.
const (
	pduDevLogin = "anon"
	pduDevKey   = "anon"
)

// pduCredentials are the login id and HMAC key of cfg's PDUs.
func pduCredentials(cfg Config) (string, []byte) {
	if cfg.Login == "" {
		return pduDevLogin, []byte(pduDevKey)
	}
	return cfg.Login, []byte(cfg.Key)
}

// pduRequestID is the request id of request n of worker: eight bytes
// for every worker below 2^16 and n below 2^40, so that every PDU of a
// run has the same length, as h1pool wants.
func pduRequestID(worker, n uint64) uint64 {
	return 1<<62 | (worker&0xffff)<<40 | n&(1<<40-1)
}

// pduRequest is the PDU of request n of worker, signing hashFor(worker, n).
func pduRequest(login string, key []byte, worker, n uint64) ([]byte, error) {
	req := pdu.AggregatorRequest{Envelope: pdu.Envelope{Header: pdu.Header{LoginID: login}},
		Requests: []pdu.AggregationRequest{{RequestID: pduRequestID(worker, n), Hash: hashFor(worker, n)}}}
	return req.Encode(ksi.SHA2_256, key)
}

// runPDU is Run for ModePDU.
func (r *run) runPDU(runCtx, callCtx context.Context) error {
	login, key := pduCredentials(r.cfg)
	first, err := pduRequest(login, key, 0, 0)
	if err != nil {
		return fmt.Errorf("bench: the request PDU: %w", err)
	}
	pool := newH1PoolFor(r.cfg.Server, r.cfg.TLS, r.cfg.HTTPConns, pduPath, "application/ksi-request", "", "", len(first))
	defer pool.close()
	r.unaryWorkers(runCtx, callCtx, func(worker uint64) unaryCall {
		return func(ctx context.Context, n uint64) (int, int64, error) {
			req, err := pduRequest(login, key, worker, n)
			if err != nil {
				return 0, 0, fmt.Errorf("bench: the request PDU: %w", err)
			}
			status, body, sent, err := pool.postTimed(ctx, req)
			if err != nil {
				return 0, sent, err
			}
			elems, err := pduAnswer(status, body, key, pduRequestID(worker, n))
			if err != nil {
				return 0, sent, err
			}
			size := 4 // the signature's TLV header
			for _, e := range elems {
				size += len(e)
			}
			if r.verified.CompareAndSwap(false, true) {
				if err := checkElements(elems, hashFor(worker, n)); err != nil {
					return 0, sent, err
				}
			}
			return size, sent, nil
		}
	})
	return nil
}

// pduAnswer checks the answer to a PDU with one aggregation request, id,
// made with key: an aggregator response whose HMAC (SHA-256) verifies,
// with no error payload and one aggregation response for id with status
// 0 and a signature, in an HTTP 200. It returns the signature's
// elements, or why not (HTTP status, KSI status and message).
func pduAnswer(status int, body, key []byte, id uint64) ([][]byte, error) {
	resp, err := pdu.ParseAggregatorResponse(body)
	if err != nil {
		if status != http.StatusOK {
			return nil, fmt.Errorf("HTTP %d: %s", status, bodySnippet(body))
		}
		return nil, fmt.Errorf("HTTP %d: %w", status, err)
	}
	if resp.HMAC == nil {
		if resp.Error == nil {
			return nil, fmt.Errorf("HTTP %d: an answer without HMAC", status)
		}
		// A bare error PDU: the server could not read or authenticate
		// the request, and has no key to authenticate its answer with.
		return nil, fmt.Errorf("HTTP %d: error PDU without HMAC: %w", status, ksiStatusError(resp.Error.Status, resp.Error.Message))
	}
	if alg := resp.HMAC.Alg(); alg != ksi.SHA2_256 {
		return nil, fmt.Errorf("HTTP %d: the answer's HMAC is %v, want SHA-256 as the request's", status, alg)
	}
	if err := resp.Verify(key); err != nil {
		return nil, fmt.Errorf("HTTP %d: the answer: %w", status, err)
	}
	if resp.Error != nil {
		return nil, fmt.Errorf("HTTP %d: %w", status, ksiStatusError(resp.Error.Status, resp.Error.Message))
	}
	if len(resp.Responses) != 1 || resp.Responses[0].RequestID != id {
		return nil, fmt.Errorf("HTTP %d: %d aggregation responses, want one for request %#x", status, len(resp.Responses), id)
	}
	a := &resp.Responses[0]
	if a.Status != 0 {
		return nil, fmt.Errorf("HTTP %d: %w", status, ksiStatusError(a.Status, a.ErrorMessage))
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d with KSI status 0", status)
	}
	if len(a.SignatureElements) == 0 {
		return nil, errors.New("HTTP 200: an aggregation response with status 0 and no signature")
	}
	return a.SignatureElements, nil
}

// checkElements verifies (internal policy) the signature made of an
// aggregation response's elements as the signature of hash.
func checkElements(elems [][]byte, hash []byte) error {
	sig, err := ksi.SignatureFromElements(elems)
	if err != nil {
		return fmt.Errorf("signature: %w", err)
	}
	raw, err := sig.Encode()
	if err != nil {
		return fmt.Errorf("signature: %w", err)
	}
	return checkSignature(raw, hash)
}
