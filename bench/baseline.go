package bench

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tempel-ksi/tempel/tsp"
)

// The baseline is what registries run today: a plain RFC 3161 responder
// that signs one token per request with its TSA key, genTime now, and no
// KSI signature. `tempel bench --mode rfc3161` measures Tempel's front
// door against it with the same kind of key, so the ratio shows what the
// KSI anchor costs beside the key operation that both must make.

// Bounds of the baseline responder, so that an overload is refused at
// once instead of queueing without limit.
const (
	// DefaultBaselineConns bounds its open connections; more are closed
	// as they are accepted.
	DefaultBaselineConns = 15_000
	// DefaultBaselineInFlight bounds the requests it answers at once;
	// more get HTTP 503 with a systemFailure rejection. The key
	// operations queue for the cores anyway: this only bounds memory.
	DefaultBaselineInFlight = 4096
)

// Baseline is a plain RFC 3161 responder: POST /tsa.
type Baseline struct {
	signer   *tsp.Signer
	root     *x509.Certificate
	inFlight chan struct{}
	serialHi uint64 // random, so that serials differ between runs
	serial   atomic.Uint64
}

// NewBaseline makes a responder with a fresh key of kind KeyRSA
// (RSA-2048) or KeyECDSA (P-256), certified (extended key usage
// timeStamping, critical) by a fresh root it keeps in memory.
func NewBaseline(kind string) (*Baseline, error) {
	var key crypto.Signer
	var err error
	switch kind {
	case KeyRSA:
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	case KeyECDSA:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		return nil, fmt.Errorf("bench: baseline key %q: want %s or %s", kind, KeyRSA, KeyECDSA)
	}
	if err != nil {
		return nil, fmt.Errorf("bench: baseline key: %w", err)
	}
	root, cert, err := baselineCerts(key)
	if err != nil {
		return nil, err
	}
	var hi [8]byte
	if _, err := rand.Read(hi[:]); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	b := &Baseline{
		signer:   &tsp.Signer{Key: key, Cert: cert, Chain: []*x509.Certificate{root}},
		root:     root,
		inFlight: make(chan struct{}, DefaultBaselineInFlight),
		serialHi: uint64(hi[0])<<56 | uint64(hi[1])<<48 | uint64(hi[2])<<40 | 1<<62,
	}
	return b, nil
}

// Root is the certificate that issued the baseline's TSA certificate.
func (b *Baseline) Root() *x509.Certificate { return b.root }

// baselineCerts issues a root (ECDSA P-256) and a TSA certificate for key.
func baselineCerts(key crypto.Signer) (root, cert *x509.Certificate, err error) {
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("bench: baseline root key: %w", err)
	}
	now := time.Now()
	rootTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tempel bench baseline root"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(7 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	if err != nil {
		return nil, nil, fmt.Errorf("bench: baseline root: %w", err)
	}
	if root, err = x509.ParseCertificate(der); err != nil {
		return nil, nil, fmt.Errorf("bench: baseline root: %w", err)
	}
	eku, err := asn1.Marshal([]asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 8}}) // timeStamping
	if err != nil {
		return nil, nil, fmt.Errorf("bench: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "tempel bench baseline TSA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(7 * 24 * time.Hour),
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 37}, Critical: true, Value: eku}},
	}
	if der, err = x509.CreateCertificate(rand.Reader, tmpl, root, key.Public(), rootKey); err != nil {
		return nil, nil, fmt.Errorf("bench: baseline TSA certificate: %w", err)
	}
	if cert, err = x509.ParseCertificate(der); err != nil {
		return nil, nil, fmt.Errorf("bench: baseline TSA certificate: %w", err)
	}
	return root, cert, nil
}

// ServeHTTP answers POST /tsa with a token signed now.
func (b *Baseline) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/tsa" {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "POST a DER TimeStampReq", http.StatusMethodNotAllowed)
		return
	}
	select {
	case b.inFlight <- struct{}{}:
		defer func() { <-b.inFlight }()
	default:
		writeTSAResp(w, http.StatusServiceUnavailable, tsp.Rejection(&tsp.Failure{Info: tsp.SystemFailure, Text: "busy: too many requests in flight"}))
		return
	}
	der, err := io.ReadAll(http.MaxBytesReader(w, r.Body, tsp.MaxRequestSize))
	if err != nil {
		writeTSAResp(w, http.StatusRequestEntityTooLarge, tsp.Rejection(&tsp.Failure{Info: tsp.BadDataFormat, Text: "request larger than 16 KiB or unreadable"}))
		return
	}
	resp, status := b.respond(der)
	writeTSAResp(w, status, resp)
}

// respond makes the answer to der and its HTTP status.
func (b *Baseline) respond(der []byte) ([]byte, int) {
	req, err := tsp.ParseRequest(der)
	if err != nil {
		return rejection(err), http.StatusOK
	}
	serial := new(big.Int).SetUint64(b.serialHi | b.serial.Add(1))
	d, err := b.signer.Draft(req, serial, time.Now())
	if err != nil {
		return rejection(err), http.StatusOK
	}
	sig, err := d.Sign()
	if err == nil {
		var resp []byte
		if resp, err = d.PlainResponse(sig); err == nil {
			return resp, http.StatusOK
		}
	}
	return tsp.Rejection(&tsp.Failure{Info: tsp.SystemFailure, Text: err.Error()}), http.StatusInternalServerError
}

// rejection is the answer to a request the TSA refuses.
func rejection(err error) []byte {
	var f *tsp.Failure
	if !errors.As(err, &f) {
		f = &tsp.Failure{Info: tsp.SystemFailure, Text: err.Error()}
	}
	return tsp.Rejection(f)
}

func writeTSAResp(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/timestamp-reply")
	w.WriteHeader(status)
	w.Write(body)
}

// ServeBaseline serves b on ln (HTTP/1.1) until ctx ends, with at most
// DefaultBaselineConns connections.
func ServeBaseline(ctx context.Context, ln net.Listener, b *Baseline) error {
	srv := &http.Server{
		Handler:           b,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			srv.Shutdown(shut)
		case <-done:
		}
	}()
	err := srv.Serve(&capListener{Listener: ln, max: DefaultBaselineConns})
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("bench: baseline: %w", err)
}

// capListener closes connections accepted beyond max open ones at once.
type capListener struct {
	net.Listener
	max  int64
	open atomic.Int64
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) > l.max {
			l.open.Add(-1)
			c.Close()
			continue
		}
		return &capConn{Conn: c, l: l}, nil
	}
}

type capConn struct {
	net.Conn
	l    *capListener
	once sync.Once
}

func (c *capConn) Close() error {
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
}
