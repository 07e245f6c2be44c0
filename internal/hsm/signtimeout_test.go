//go:build cgo

package hsm

import (
	"crypto"
	"crypto/rand"
	"io"
	"strings"
	"testing"
	"time"
)

// stuckSigner stands for a token that stopped answering in the middle
// of a call, which SoftHSM2 cannot be made to do.
type stuckSigner struct {
	pub     crypto.PublicKey
	release chan struct{}
}

func (s stuckSigner) Public() crypto.PublicKey { return s.pub }
func (s stuckSigner) Delete() error            { return nil }
func (s stuckSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	<-s.release
	return nil, io.ErrUnexpectedEOF
}

// A signature the token never answers fails after SignTimeout and says
// so, rather than hold the caller (the calendar's signing loop) forever.
func TestSignTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	keys := New(Config{SignTimeout: 100 * time.Millisecond})
	k := &Key{keys: keys, uri: "pkcs11:token=t;object=k;type=private", signer: stuckSigner{release: release}, tok: &token{pin: "1234", name: `"t"`}}
	done := make(chan error, 1)
	go func() {
		_, err := k.Sign(rand.Reader, make([]byte, 32), crypto.SHA256)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "the token did not answer within 100ms") {
			t.Fatalf("Sign: %v, want a timeout error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Sign waited on a token that never answers")
	}
}
