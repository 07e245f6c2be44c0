package bench

import (
	"bytes"
	"context"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/tempel-ksi/tempel/tsp"
)

// ModeTSA posts RFC 3161 time-stamp requests (DER TimeStampReq, SHA-256,
// a nonce, certReq) to POST /tsa over HTTP/1.1, one connection per
// request in flight, as RFC 3161 clients do. With Rate it is an open loop
// like the other modes.
const ModeTSA = "tsa"

// DefaultTSAConns bounds the HTTP/1.1 connections of ModeTSA when
// [Config.TSAConns] is 0. A front-door token waits for its round and
// calendar second (up to about a second), so 15,000 tokens/s keep about
// as many connections open; requests beyond the bound wait in the
// generator, and that wait counts in their latency.
const DefaultTSAConns = 12_000

// tsaCallTimeout bounds one request of ModeTSA, so that a server that
// stops answering ends the run with errors instead of hanging it.
const tsaCallTimeout = 30 * time.Second

// TSA key kinds, as the token's signature algorithm tells them.
const (
	KeyRSA   = "rsa"
	KeyECDSA = "ecdsa"
)

var (
	oidRSAEncryption   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidSHA256WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
)

// tsaTarget is where ModeTSA posts.
func tsaURL(cfg Config) string {
	if cfg.TLS != nil {
		return "https://" + cfg.Server + "/tsa"
	}
	return "http://" + cfg.Server + "/tsa"
}

// newTSAClient is an HTTP/1.1 client with at most conns connections,
// for ProbeTSA (the load goes through an h1pool).
func newTSAClient(cfg Config, conns int) *http.Client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxConnsPerHost:     conns,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}
	if cfg.TLS != nil {
		// HTTP/1.1 only: the server gives an h2 connection to gRPC.
		tc := cfg.TLS.Clone()
		tc.NextProtos = []string{"http/1.1"}
		tr.TLSClientConfig = tc
	}
	return &http.Client{Transport: tr, Timeout: tsaCallTimeout}
}

// runTSA is Run for ModeTSA.
func (r *run) runTSA(runCtx, callCtx context.Context) {
	pool := newH1Pool(r.cfg.Server, r.cfg.TLS, r.cfg.TSAConns, "/tsa", r.cfg.Login, r.cfg.Key, len(tsaRequest(0, 0)))
	defer pool.close()
	var first sync.Once
	r.unaryWorkers(runCtx, callCtx, func(worker uint64) unaryCall {
		return func(ctx context.Context, n uint64) (int, int64, error) {
			der := tsaRequest(worker, n)
			status, body, sent, err := pool.postTimed(ctx, der)
			if err == nil {
				err = grantedAnswer(status, body)
			}
			if err != nil {
				return 0, sent, err
			}
			// Every answer's status is checked; the first token whole.
			first.Do(func() { err = r.checkToken(der, body) })
			return len(body), sent, err
		}
	})
}

// postTSA posts a request and returns a granted response, or an error
// saying why not (the HTTP status, the rejection's text).
func postTSA(ctx context.Context, c *http.Client, url, login, key string, der []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(der))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/timestamp-query")
	if login != "" {
		req.SetBasicAuth(login, key)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, tsp.MaxTokenSize+1))
	resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	return body, grantedAnswer(resp.StatusCode, body)
}

// grantedAnswer checks that an answer is HTTP 200 with a granted
// TimeStampResp, and says why not.
func grantedAnswer(status int, body []byte) error {
	if status != http.StatusOK || !granted(body) {
		why := "not a granted TimeStampResp"
		if _, err := tsp.ParseResponse(body); err != nil {
			why = err.Error()
		}
		return fmt.Errorf("HTTP %d: %s", status, why)
	}
	return nil
}

// granted reports whether a TimeStampResp starts with status granted
// (0) or grantedWithMods (1), without parsing the token.
func granted(resp []byte) bool {
	// SEQUENCE, its length (short or 0x81-0x83 long form), then
	// PKIStatusInfo SEQUENCE { INTEGER status ... }.
	if len(resp) < 2 || resp[0] != 0x30 {
		return false
	}
	i := 2
	if resp[1]&0x80 != 0 {
		i += int(resp[1] & 0x7f)
	}
	if len(resp) < i+5 || resp[i] != 0x30 || resp[i+2] != 0x02 || resp[i+3] != 1 {
		return false
	}
	return resp[i+4] <= 1
}

// checkToken checks the first response of a run: a token for the
// request's imprint and nonce, with a KSI signature that is the token's
// when cfg.TSAWantKSI (Tempel's front door) and none otherwise (the
// baseline), and records the TSA key's kind.
func (r *run) checkToken(req, resp []byte) error {
	tok, err := tsp.ParseResponse(resp)
	if err != nil {
		return fmt.Errorf("bench: the first token: %w", err)
	}
	q, err := tsp.ParseRequest(req)
	if err != nil {
		return fmt.Errorf("bench: internal error: our request: %w", err)
	}
	if !bytes.Equal(tok.Digest, q.Imprint.Digest()) || !bytes.Equal(tok.Nonce, q.Nonce) {
		return errors.New("bench: the first token is not for its request (imprint or nonce differ)")
	}
	switch {
	case r.cfg.TSAWantKSI:
		if _, err := tok.KSI(); err != nil {
			return fmt.Errorf("bench: the first token's KSI signature: %w", err)
		}
	case tok.KSISignature != nil:
		return errors.New("bench: the first token carries a KSI signature; want a plain token")
	}
	r.tsaKey.Store(keyKind(tok))
	return nil
}

// keyKind names the kind of key that signed tok.
func keyKind(tok *tsp.Token) string {
	switch {
	case tok.SignatureAlg.Equal(oidRSAEncryption), tok.SignatureAlg.Equal(oidSHA256WithRSA):
		return KeyRSA
	case tok.SignatureAlg.Equal(oidECDSAWithSHA256):
		return KeyECDSA
	}
	return tok.SignatureAlg.String()
}

// ProbeTSA sends one time-stamp request to cfg.Server's /tsa and returns
// the kind of the TSA key that signed the answer (KeyRSA, KeyECDSA or
// the signature algorithm's OID). The token must carry its KSI signature
// when cfg.TSAWantKSI.
func ProbeTSA(ctx context.Context, cfg Config) (string, error) {
	c := newTSAClient(cfg, 1)
	defer c.CloseIdleConnections()
	der := tsaRequest(1<<21, 0) // a worker no run has
	body, err := postTSA(ctx, c, tsaURL(cfg), cfg.Login, cfg.Key, der)
	if err != nil {
		return "", fmt.Errorf("bench: %s: %w", tsaURL(cfg), err)
	}
	r := &run{cfg: cfg}
	if err := r.checkToken(der, body); err != nil {
		return "", err
	}
	return r.tsaKey.Load().(string), nil
}

// tsaRequestHead is a TimeStampReq up to its hashedMessage: version 1
// and a SHA-256 message imprint (with NULL parameters, as openssl sends
// it). The digest, the 8-byte nonce and certReq TRUE follow.
var tsaRequestHead = []byte{
	0x30, 0x43, // TimeStampReq, 67 bytes
	0x02, 0x01, 0x01, // version
	0x30, 0x31, // messageImprint
	0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00,
	0x04, 0x20, // hashedMessage
}

// tsaRequest is request n of worker: a distinct document hash and a
// positive nonce, distinct for workers below 2^22 and n below 2^40.
func tsaRequest(worker, n uint64) []byte {
	b := make([]byte, 0, 2+0x43)
	b = append(b, tsaRequestHead...)
	b = append(b, hashFor(worker, n)[1:]...)
	b = append(b, 0x02, 0x08)
	b = binary.BigEndian.AppendUint64(b, (worker<<40|n)&(1<<63-1)|1<<62)
	return append(b, 0x01, 0x01, 0xff)
}
