package bench

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
)

// ModeREST posts signing requests to the REST gateway's POST /v1/sign,
// one per request, over keep-alive HTTP/1.1 connections (at most
// HTTPConns) with the lean client h1pool. The hash goes as the JSON
// mapping has it, a base64 imprint; --user and --key go as Basic
// credentials. HTTP 429 is a refusal.
const ModeREST = "rest"

const restPath = "/v1/sign"

// restBody is the JSON body of a REST Sign request for hash: always of
// the same length for SHA-256 imprints.
func restBody(hash []byte) []byte {
	b := make([]byte, 0, 12+base64.StdEncoding.EncodedLen(len(hash)))
	b = append(b, `{"hash":"`...)
	b = base64.StdEncoding.AppendEncode(b, hash)
	return append(b, `"}`...)
}

// runREST is Run for ModeREST.
func (r *run) runREST(runCtx, callCtx context.Context) {
	pool := newH1PoolFor(r.cfg.Server, r.cfg.TLS, r.cfg.HTTPConns, restPath, "application/json",
		r.cfg.Login, r.cfg.Key, len(restBody(hashFor(0, 0))))
	defer pool.close()
	r.unaryWorkers(runCtx, callCtx, func(worker uint64) unaryCall {
		return func(ctx context.Context, n uint64) (int, int64, error) {
			hash := hashFor(worker, n)
			status, body, sent, err := pool.postTimed(ctx, restBody(hash))
			if err != nil {
				return 0, sent, err
			}
			size, err := r.restAnswer(status, body, hash)
			return size, sent, err
		}
	})
}

// restAnswer checks a REST Sign answer and returns its signature's size.
// The first answer of the run is parsed and its signature verified
// (internal policy); later ones only have to carry a signature, so that
// checking costs the generator little.
func (r *run) restAnswer(status int, body, hash []byte) (int, error) {
	switch {
	case status == http.StatusTooManyRequests:
		return 0, &refusedError{"HTTP 429: " + restMessage(body)}
	case status != http.StatusOK:
		return 0, fmt.Errorf("HTTP %d: %s", status, restMessage(body))
	}
	if r.verified.CompareAndSwap(false, true) {
		var resp struct {
			Signature []byte `json:"signature"`
		}
		if err := json.Unmarshal(body, &resp); err != nil {
			return 0, fmt.Errorf("bench: REST answer: %w", err)
		}
		if err := checkSignature(resp.Signature, hash); err != nil {
			return 0, err
		}
		return len(resp.Signature), nil
	}
	n := jsonStringLen(body, "signature")
	if n <= 0 {
		return 0, fmt.Errorf("bench: REST answer without a signature: %s", bodySnippet(body))
	}
	return n / 4 * 3, nil
}

// restMessage is the message of the gateway's error body
// ({"code":..,"message":..}), or the body's start.
func restMessage(body []byte) string {
	var e struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &e) == nil && e.Message != "" {
		return fmt.Sprintf("code %d: %s", e.Code, e.Message)
	}
	return bodySnippet(body)
}

// jsonStringLen is the length of the string value of key in a JSON
// object written by the gateway (whose strings here are base64, without
// escapes), or -1 if it has none. It finds the value without decoding the
// object: the generator reads tens of thousands of answers a second.
func jsonStringLen(body []byte, key string) int {
	i := bytes.Index(body, []byte(`"`+key+`"`))
	if i < 0 {
		return -1
	}
	rest := bytes.TrimLeft(body[i+len(key)+2:], " \t\r\n")
	if len(rest) == 0 || rest[0] != ':' {
		return -1
	}
	rest = bytes.TrimLeft(rest[1:], " \t\r\n")
	if len(rest) == 0 || rest[0] != '"' {
		return -1
	}
	return bytes.IndexByte(rest[1:], '"')
}
