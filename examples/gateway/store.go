package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/verifier"
)

// store keeps documents and their signatures in one folder: ID (the
// document, byte for byte) and ID.ksig (its KSI signature), where ID is
// 32 random hex digits.
type store struct {
	dir     string
	maxSize int64 // largest document accepted, in bytes
	signer  interface {
		Sign(ctx context.Context, hash ksi.Imprint) (*ksi.Signature, error)
	}
	timeout time.Duration // bound of one upload's wait for its signature
	log     *slog.Logger
}

// stored is the answer to an upload.
type stored struct {
	ID        string    `json:"id"`
	SHA256    string    `json:"sha256"`
	SignedAt  time.Time `json:"signed_at"`
	Document  string    `json:"document"`
	Signature string    `json:"signature"`
}

// routes serves POST /documents (store and timestamp the body), GET
// /documents/{id} and GET /documents/{id}/signature.
func (s *store) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /documents", s.upload)
	mux.HandleFunc("GET /documents/{id}", func(w http.ResponseWriter, r *http.Request) { s.serveFile(w, r, "") })
	mux.HandleFunc("GET /documents/{id}/signature", func(w http.ResponseWriter, r *http.Request) { s.serveFile(w, r, ".ksig") })
	return mux
}

// upload stores the document, has its hash signed (in the batcher's next
// round) and stores the signature. A document whose signature could not
// be obtained is removed: the service never keeps an untimestamped
// record it has answered for.
func (s *store) upload(w http.ResponseWriter, r *http.Request) {
	id, err := newID()
	if err != nil {
		s.fail(w, http.StatusInternalServerError, err)
		return
	}
	path := filepath.Join(s.dir, id)
	hash, err := s.save(path, http.MaxBytesReader(w, r.Body, s.maxSize))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		s.fail(w, http.StatusRequestEntityTooLarge, fmt.Errorf("document larger than %d bytes", s.maxSize))
		return
	case err != nil:
		s.fail(w, http.StatusInternalServerError, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
	defer cancel()
	sig, err := s.signer.Sign(ctx, hash)
	if err == nil {
		// The SDK verified the signature already; checking it here again
		// against the stored bytes' hash costs microseconds and guards
		// the one thing this service promises.
		if rep := verifier.Verify(ctx, sig, verifier.Internal, verifier.Options{Document: hash}); rep.Result != verifier.OK {
			err = fmt.Errorf("signature fails %s: %s", rep.Code, rep.Message)
		}
	}
	var b []byte
	if err == nil {
		b, err = sig.Encode()
	}
	if err == nil {
		err = writeFile(path+".ksig", b)
	}
	if err != nil {
		os.Remove(path)
		os.Remove(path + ".ksig")
		if errors.Is(err, errBusy) {
			w.Header().Set("Retry-After", "1")
		}
		s.fail(w, http.StatusServiceUnavailable, fmt.Errorf("timestamping failed, document not stored: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(stored{ID: id, SHA256: hex.EncodeToString(hash.Digest()), SignedAt: sig.SigningUTC(),
		Document: "/documents/" + id, Signature: "/documents/" + id + "/signature"})
}

// save writes body to path durably and returns its SHA-256 imprint.
func (s *store) save(path string, body io.Reader) (ksi.Imprint, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(f, h), body)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return nil, err
	}
	return ksi.NewImprint(ksi.SHA2_256, h.Sum(nil))
}

func writeFile(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (s *store) serveFile(w http.ResponseWriter, r *http.Request, suffix string) {
	id := r.PathValue("id")
	if b, err := hex.DecodeString(id); err != nil || len(b) != 16 {
		http.Error(w, "no such document", http.StatusNotFound)
		return
	}
	if suffix != "" {
		w.Header().Set("Content-Type", "application/octet-stream")
	}
	http.ServeFile(w, r, filepath.Join(s.dir, id+suffix))
}

func (s *store) fail(w http.ResponseWriter, code int, err error) {
	if code >= 500 {
		s.log.Warn("upload failed", "status", code, "err", err)
	}
	http.Error(w, "gateway: "+err.Error(), code)
}

func newID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}
