package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/tempel-ksi/tempel/tsp"
	"github.com/tempel-ksi/tempel/verifier"
)

// tsaPath is where a Tempel server answers RFC 3161 requests.
const tsaPath = "/tsa"

// TimeStamp asks the endpoints' RFC 3161 front door (POST /tsa on the
// same port as gRPC) for a time-stamp token: req is a DER TimeStampReq
// ([tsp.ParseRequest] must accept it), the result the DER TimeStampResp,
// byte for byte. It follows the conventions of the unary calls: Basic
// credentials of Config.Login, TLS for https:// endpoints, Config.Parallel
// endpoints at once starting with the one that answered last, Retries and
// RetryBackoff for an endpoint that is down or overloaded, Timeout per
// attempt.
//
// An answer wins only when it is a granted response whose token fits the
// request: the message imprint and nonce are the request's, and the
// embedded KSI signature verifies internally against the token
// ([tsp.Token.KSI], [verifier.Internal]). A rejection is an error naming
// the server's status text.
func (c *Client) TimeStamp(ctx context.Context, req []byte) ([]byte, error) {
	if c.closed.Load() {
		return nil, fmt.Errorf("%w: time-stamp", ErrClosed)
	}
	q, err := tsp.ParseRequest(req)
	if err != nil {
		return nil, fmt.Errorf("%w: time-stamp: %v", ErrInvalid, err)
	}
	c.tsaOnce.Do(c.initTSA)
	switch {
	case c.tsaErr != nil:
		return nil, c.tsaErr
	case c.tsaHTTP == nil: // Close came first
		return nil, fmt.Errorf("%w: time-stamp", ErrClosed)
	}
	return askEndpoints(ctx, c, "time-stamp", func(ctx context.Context, i int) ([]byte, int, error) {
		return c.tsaAttempts(ctx, i, req, q)
	})
}

// initTSA makes the HTTP client and the /tsa URLs of the endpoints.
func (c *Client) initTSA() {
	c.tsaHTTP = &http.Client{
		Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         (&net.Dialer{Timeout: c.cfg.Timeout, KeepAlive: 30 * time.Second}).DialContext,
			TLSClientConfig:     tlsConfig(c.cfg.TLS),
			TLSHandshakeTimeout: c.cfg.Timeout,
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     90 * time.Second,
		},
		// A redirect would carry the credentials elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	for _, ep := range c.cfg.Endpoints {
		target, useTLS, err := ParseEndpoint(ep)
		if err != nil {
			c.tsaErr = err
			return
		}
		scheme := "http://"
		if useTLS {
			scheme = "https://"
		}
		c.tsaURLs = append(c.tsaURLs, scheme+target+tsaPath)
	}
}

// tsaAttempts posts req to endpoint i until it gives a valid answer, it
// fails in a way retrying cannot mend, or the retries are spent.
func (c *Client) tsaAttempts(ctx context.Context, i int, req []byte, q *tsp.Request) ([]byte, int, error) {
	endpoint := c.cfg.Endpoints[i]
	for n := 1; ; n++ {
		body, retry, err := c.tsaPost(ctx, i, req)
		if err == nil {
			if err := checkTimeStamp(ctx, endpoint, body, q); err != nil {
				return nil, n, err
			}
			return body, n, nil
		}
		if ctx.Err() != nil {
			return nil, n, fmt.Errorf("client: time-stamp via %s: %w", endpoint, ctx.Err())
		}
		if !retry || n > c.retries {
			return nil, n, err
		}
		t := time.NewTimer(c.backoff(n))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, n, err
		case <-t.C:
		}
	}
}

// tsaPost makes one attempt; retry tells whether a failure may be
// retried (unreachable, overloaded, no answer in time).
func (c *Client) tsaPost(ctx context.Context, i int, req []byte) (body []byte, retry bool, err error) {
	endpoint := c.cfg.Endpoints[i]
	actx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	hr, err := http.NewRequestWithContext(actx, http.MethodPost, c.tsaURLs[i], bytes.NewReader(req))
	if err != nil {
		return nil, false, fmt.Errorf("client: time-stamp via %s: %w", endpoint, err)
	}
	hr.Header.Set("Content-Type", "application/timestamp-query")
	hr.Header.Set("Accept", "application/timestamp-reply")
	if c.cfg.Login != "" {
		hr.SetBasicAuth(c.cfg.Login, c.cfg.Key)
	}
	if c.cfg.MachineID != "" {
		hr.Header.Set(machineIDKey, c.cfg.MachineID)
	}
	resp, err := c.tsaHTTP.Do(hr)
	if err != nil {
		if ctx.Err() == nil && actx.Err() != nil {
			return nil, true, fmt.Errorf("%w: time-stamp via %s: %w", ErrUnavailable, endpoint, context.DeadlineExceeded)
		}
		return nil, true, fmt.Errorf("%w: time-stamp via %s: %v", ErrUnavailable, endpoint, err)
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(io.LimitReader(resp.Body, tsp.MaxTokenSize+1))
	switch {
	case err != nil:
		return nil, true, fmt.Errorf("%w: time-stamp via %s: reading the answer: %v", ErrUnavailable, endpoint, err)
	case len(body) > tsp.MaxTokenSize:
		return nil, false, fmt.Errorf("%w: time-stamp via %s: answer larger than %d bytes", ErrBadResponse, endpoint, tsp.MaxTokenSize)
	case resp.StatusCode == http.StatusOK:
		return body, false, nil
	}
	return nil, httpRetryable(resp.StatusCode), httpErr(endpoint, resp.StatusCode, body)
}

// httpRetryable: the server was unavailable, overloaded or late.
func httpRetryable(code int) bool {
	switch code {
	case http.StatusServiceUnavailable, http.StatusTooManyRequests, http.StatusBadGateway, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// httpErr maps a failed HTTP answer to the sentinels, with the server's
// words: the status text of a rejection, or the start of a text body.
func httpErr(endpoint string, code int, body []byte) error {
	var sentinel error
	switch code {
	case http.StatusUnauthorized, http.StatusForbidden:
		sentinel = ErrUnauthenticated
	case http.StatusTooManyRequests:
		sentinel = ErrOverloaded
	case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
		sentinel = ErrUnavailable
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
		sentinel = ErrInvalid
	}
	msg := strings.TrimSpace(string(body))
	var f *tsp.Failure
	if _, err := tsp.ParseResponse(body); errors.As(err, &f) {
		msg = f.Error()
	} else if len(msg) > 200 || strings.ContainsFunc(msg, func(r rune) bool { return r < ' ' && r != '\n' }) {
		msg = fmt.Sprintf("%d bytes", len(body))
	}
	if sentinel == nil {
		return fmt.Errorf("client: time-stamp via %s: HTTP %d: %s", endpoint, code, msg)
	}
	return fmt.Errorf("%w: time-stamp via %s: HTTP %d: %s", sentinel, endpoint, code, msg)
}

// checkTimeStamp checks a 200 answer against the request: a granted
// response whose token has the request's imprint and nonce and a KSI
// signature of itself that verifies internally.
func checkTimeStamp(ctx context.Context, endpoint string, body []byte, q *tsp.Request) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: time-stamp via %s: %s", ErrBadResponse, endpoint, fmt.Sprintf(format, args...))
	}
	tok, err := tsp.ParseResponse(body)
	var f *tsp.Failure
	switch {
	case errors.As(err, &f):
		return fmt.Errorf("%w: time-stamp via %s: the server refused the request: %v", ErrInvalid, endpoint, f)
	case err != nil:
		return bad("%v", err)
	}
	if err := CheckToken(ctx, tok, q); err != nil {
		return fmt.Errorf("%w (via %s)", err, endpoint)
	}
	return nil
}

// CheckToken checks that tok answers q: the message imprint and nonce
// are the request's, and the embedded KSI signature is a signature of
// the token that verifies internally with the message imprint as its
// document. Its errors wrap [ErrBadResponse].
func CheckToken(ctx context.Context, tok *tsp.Token, q *tsp.Request) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: time-stamp token: %s", ErrBadResponse, fmt.Sprintf(format, args...))
	}
	imp, err := tok.Imprint()
	if err != nil {
		return bad("message imprint: %v", err)
	}
	if !imp.Equal(q.Imprint) {
		return bad("message imprint %s, the request's is %s", imp, q.Imprint)
	}
	if !bytes.Equal(tok.Nonce, q.Nonce) {
		return bad("nonce %x, the request's is %x", tok.Nonce, q.Nonce)
	}
	sig, err := tok.KSI()
	if err != nil {
		return bad("KSI signature: %v", err)
	}
	rep := verifier.Verify(ctx, sig, verifier.Internal, verifier.Options{Document: imp})
	if rep.Result != verifier.OK {
		return bad("KSI signature fails %s (%s): %s", rep.Rule, rep.Code, rep.Message)
	}
	return nil
}
