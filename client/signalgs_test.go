package client_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/tempel-ksi/tempel/client"
	"github.com/tempel-ksi/tempel/ksi"
)

// Sign and SignLevel take document hashes of every algorithm Tempel
// implements that is not deprecated now; SHA-1 and SM3 are refused
// before anything is sent, with an error naming them.
func TestSignEveryHashAlgorithm(t *testing.T) {
	t.Parallel()
	addr := startServer(t, testUsers)
	c := newClient(t, client.Config{Endpoints: []string{addr}, Login: testLogin, Key: testKey})
	var wg sync.WaitGroup
	for _, a := range []ksi.HashAlg{ksi.SHA2_256, ksi.RIPEMD160, ksi.SHA2_384, ksi.SHA2_512, ksi.SHA3_224, ksi.SHA3_256, ksi.SHA3_384, ksi.SHA3_512} {
		for _, level := range []byte{0, 3} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				doc, err := a.Digest([]byte("TestSignEveryHashAlgorithm"))
				if err != nil {
					t.Error(err)
					return
				}
				sig, err := c.SignLevel(context.Background(), doc, level)
				if err != nil {
					t.Errorf("%s at level %d: %v", a, level, err)
					return
				}
				if !sig.DocumentHash().Equal(doc) || sig.Chains()[0].Links[0].LevelCorrection != uint64(level) {
					t.Errorf("%s at level %d: document hash %s, first correction %d", a, level, sig.DocumentHash(), sig.Chains()[0].Links[0].LevelCorrection)
				}
			}()
		}
	}
	wg.Wait()
	sha1, _ := ksi.SHA1.Digest([]byte("old"))
	for _, tc := range []struct {
		h    ksi.Imprint
		want string
	}{{sha1, "SHA-1 is deprecated since 2016-07-01"}, {append(ksi.Imprint{byte(ksi.SM3)}, make([]byte, 32)...), "SM3"}} {
		if _, err := c.Sign(context.Background(), tc.h); !errors.Is(err, client.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrInvalid naming %q", tc.h.Alg(), err, tc.want)
		}
	}
}

// SignMany refuses what Sign refuses, masked or not, before anything is
// sent: with masks the server sees only the local root, so its own check
// never meets the document hashes.
func TestSignManyRefusesWhatSignRefuses(t *testing.T) {
	t.Parallel()
	c := newClient(t, client.Config{Endpoints: []string{closedPort(t)}, Retries: -1})
	sha1, _ := ksi.SHA1.Digest([]byte("old"))
	sm3 := append(ksi.Imprint{byte(ksi.SM3)}, make([]byte, 32)...)
	good, _ := ksi.SHA2_256.Digest([]byte("good"))
	for _, tc := range []struct {
		h    ksi.Imprint
		want string
	}{{sha1, "SHA-1 is deprecated since 2016-07-01"}, {sm3, "SM3"}} {
		for _, noMask := range []bool{false, true} {
			_, err := c.SignManyWith(context.Background(), []ksi.Imprint{good, tc.h}, client.SignManyOptions{NoMask: noMask})
			if !errors.Is(err, client.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s (no mask %v): %v, want ErrInvalid naming %q", tc.h.Alg(), noMask, err, tc.want)
			}
		}
	}
}
