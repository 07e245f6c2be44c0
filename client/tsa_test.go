package client_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/tempel-ksi/tempel/client"
	"github.com/tempel-ksi/tempel/tsp"
)

func tsaRequest(t *testing.T, seed string, nonce int64) []byte {
	t.Helper()
	req, err := tsp.NewRequest(docHash(seed), big.NewInt(nonce), true)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// checkResponse parses a response and checks it answers req.
func checkResponse(t *testing.T, resp, req []byte) *tsp.Token {
	t.Helper()
	tok, err := tsp.ParseResponse(resp)
	if err != nil {
		t.Fatal(err)
	}
	q, err := tsp.ParseRequest(req)
	if err != nil {
		t.Fatal(err)
	}
	if err := client.CheckToken(context.Background(), tok, q); err != nil {
		t.Fatal(err)
	}
	return tok
}

// TimeStamp gets a token from a real node's POST /tsa, past an endpoint
// that is down, as the authenticated user.
func TestTimeStamp(t *testing.T) {
	t.Parallel()
	addr := startServer(t, testUsers)
	c := newClient(t, client.Config{Endpoints: []string{closedPort(t), "http://" + addr}, Login: testLogin, Key: testKey})
	req := tsaRequest(t, "TestTimeStamp", 42)
	resp, err := c.TimeStamp(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	tok := checkResponse(t, resp, req)
	sig, err := tok.KSI()
	if err != nil {
		t.Fatal(err)
	}
	if id := sig.Identity(); !slices.Contains(id, testLogin) {
		t.Errorf("identity %v, want %s in it", id, testLogin)
	}

	wrong := newClient(t, client.Config{Endpoints: []string{addr}, Login: testLogin, Key: "wrong key"})
	if _, err := wrong.TimeStamp(context.Background(), req); !errors.Is(err, client.ErrUnauthenticated) {
		t.Fatalf("time-stamp with a wrong key: %v, want ErrUnauthenticated", err)
	}
	if _, err := c.TimeStamp(context.Background(), []byte("not a request")); !errors.Is(err, client.ErrInvalid) {
		t.Fatalf("a malformed request: %v, want ErrInvalid", err)
	}
	down := newClient(t, client.Config{Endpoints: []string{closedPort(t)}, Retries: -1})
	if _, err := down.TimeStamp(context.Background(), req); !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("endpoint down: %v, want ErrUnavailable", err)
	}
}

// An endpoint whose token does not answer the request (a real token of
// the real node, for another nonce) never wins: with it alone the call
// fails with ErrBadResponse, next to an honest endpoint that one wins.
func TestTimeStampRefusesWrongToken(t *testing.T) {
	t.Parallel()
	addr := startServer(t, "")
	liar := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		q, err := tsp.ParseRequest(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		other, err := tsp.NewRequest(q.Imprint, big.NewInt(7), true) // another nonce
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		resp, err := http.Post("http://"+addr+"/tsa", "application/timestamp-query", bytes.NewReader(other))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	}))
	defer liar.Close()
	req := tsaRequest(t, "TestTimeStampRefusesWrongToken", 99)

	alone := newClient(t, client.Config{Endpoints: []string{liar.URL}})
	_, err := alone.TimeStamp(context.Background(), req)
	if !errors.Is(err, client.ErrBadResponse) || !strings.Contains(err.Error(), "nonce") {
		t.Fatalf("a token for another nonce: %v, want ErrBadResponse naming the nonce", err)
	}
	both := newClient(t, client.Config{Endpoints: []string{liar.URL, addr}})
	resp, err := both.TimeStamp(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	checkResponse(t, resp, req)
}
