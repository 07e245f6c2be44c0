package client_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/client"
	"github.com/tempel-ksi/tempel/internal/node"
	"github.com/tempel-ksi/tempel/internal/node/nodetest"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/verifier"
)

// startNodeMaxLevel runs a development node (no users) whose aggregator
// accepts request levels up to maxLevel (0: the node's default).
func startNodeMaxLevel(tb testing.TB, maxLevel int) string {
	tb.Helper()
	dir := tb.TempDir()
	cfg := node.Config{Role: node.RoleAll, DataDir: filepath.Join(dir, "data"), Name: "aggregator",
		RoundPeriod: 20 * time.Millisecond, PublishEvery: time.Hour, MaxLevel: maxLevel, Logger: slog.New(slog.DiscardHandler)}
	addr, _ := nodetest.Start(tb, cfg)
	return addr
}

// seedReader is a fixed mask seed, so the test can recompute the masks.
type seedReader struct{ b byte }

func (r seedReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = r.b
	}
	return len(p), nil
}

// imprintOf hashes s with alg.
func imprintOf(t testing.TB, alg ksi.HashAlg, s string) ksi.Imprint {
	t.Helper()
	m, err := alg.Digest([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return append(ksi.Imprint(nil), m...)
}

func manyHashes(t testing.TB, n int, name string) []ksi.Imprint {
	hashes := make([]ksi.Imprint, n)
	for i := range hashes {
		hashes[i] = docHash(fmt.Sprintf("%s %d/%d", name, i, n))
	}
	return hashes
}

// checkPrivate fails unless no signature contains the digest of another
// input, and each contains its own input's digest once (its chain input).
func checkPrivate(t *testing.T, sigs [][]byte, hashes []ksi.Imprint) {
	t.Helper()
	for i, sig := range sigs {
		for j, h := range hashes {
			n := bytes.Count(sig, h.Digest())
			if j == i && n != 1 {
				t.Fatalf("signature %d holds its own document hash %d times, want once (the chain input)", i, n)
			}
			if j != i && n != 0 && !h.Equal(hashes[i]) {
				t.Fatalf("signature %d reveals the hash of input %d", i, j)
			}
		}
	}
}

// verifyAll runs the internal policy on every signature against its hash.
func verifyAll(t *testing.T, sigs [][]byte, hashes []ksi.Imprint) []*ksi.Signature {
	t.Helper()
	out := make([]*ksi.Signature, len(sigs))
	for i, b := range sigs {
		sig, err := ksi.ParseSignature(b)
		if err != nil {
			t.Fatalf("signature %d: %v", i, err)
		}
		verifyInternal(t, sig, hashes[i])
		out[i] = sig
	}
	return out
}

// maskOf recomputes a reference block signer's mask (libksi blocksigner.c,
// goksi treebuilder): SHA-256 of the previous leaf's imprint and the seed.
func maskOf(prev ksi.Imprint, seed []byte) []byte {
	s := sha256.Sum256(append(append([]byte(nil), prev...), seed...))
	return append([]byte{byte(ksi.SHA2_256)}, s[:]...)
}

// leafOf is the masked leaf: the step of (mask, document) at level 1.
func leafOf(mask []byte, doc ksi.Imprint) ksi.Imprint {
	s := sha256.Sum256(append(append(append([]byte(nil), mask...), doc...), 1))
	return append(ksi.Imprint{byte(ksi.SHA2_256)}, s[:]...)
}

func TestSignManyMasked(t *testing.T) {
	t.Parallel()
	addr := startServer(t, testUsers)
	c := newClient(t, client.Config{Endpoints: []string{addr}, Login: testLogin, Key: testKey})
	ctx := context.Background()
	for _, n := range []int{1, 2, 37} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			t.Parallel()
			hashes := manyHashes(t, n, "TestSignManyMasked")
			res, err := c.SignManyEncoded(ctx, hashes, client.SignManyOptions{Rand: seedReader{7}})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Signatures) != n || res.Requests != 1 {
				t.Fatalf("%d signatures in %d requests for %d hashes, want one request", len(res.Signatures), res.Requests, n)
			}
			checkPrivate(t, res.Signatures, hashes)
			sigs := verifyAll(t, res.Signatures, hashes)
			// The masks are the reference block signer's: from the zero
			// leaf, each from the previous masked leaf and the seed.
			seed := bytes.Repeat([]byte{7}, ksi.MaskSeedSize)
			prev := ksi.ZeroLeaf()
			for i, sig := range sigs {
				lowest := sig.Chains()[0]
				first := lowest.Links[0]
				mask := maskOf(prev, seed)
				if first.Left || first.LevelCorrection != 0 || !bytes.Equal(first.Sibling, mask) {
					t.Fatalf("signature %d: first link %+v, want a right link holding the mask %x", i, first, mask)
				}
				prev = leafOf(mask, hashes[i])
				if sig.SigningTime() != sigs[0].SigningTime() {
					t.Fatalf("signature %d at %d, signature 0 at %d", i, sig.SigningTime(), sigs[0].SigningTime())
				}
				if got := sig.Identity(); len(got) == 0 || got[len(got)-1] != testLogin {
					t.Fatalf("identity %v, want the gateway's %q last", got, testLogin)
				}
				if n > 1 {
					other := hashes[(i+1)%n]
					if rep := verifier.Verify(ctx, sig, verifier.Internal, verifier.Options{Document: other}); rep.Result == verifier.OK {
						t.Fatalf("signature %d verifies against hash %d", i, (i+1)%n)
					}
				}
			}
			if !res.LastLeaf.Equal(prev) {
				t.Fatalf("last leaf %s, want %s", res.LastLeaf, prev)
			}
		})
	}
	t.Run("SignMany", func(t *testing.T) {
		t.Parallel()
		hashes := manyHashes(t, 5, "SignMany")
		sigs, err := c.SignMany(ctx, hashes)
		if err != nil {
			t.Fatal(err)
		}
		for i, sig := range sigs {
			verifyInternal(t, sig, hashes[i])
			if l := sig.Chains()[0].Links[0]; l.Left || len(l.Sibling) != 33 {
				t.Fatalf("signature %d is not masked: first link %+v", i, l)
			}
		}
		if sigs, err := c.SignMany(ctx, nil); err != nil || sigs != nil {
			t.Fatalf("no hashes: %v, %v", sigs, err)
		}
	})
}

// TestSignManyTrust verifies masked signatures as a relying party would:
// with the calendar authentication record's key from the server's
// publications file, and against the calendar.
func TestSignManyTrust(t *testing.T) {
	t.Parallel()
	addr := startServer(t, "")
	c := newClient(t, client.Config{Endpoints: []string{addr}})
	ctx := context.Background()
	hashes := manyHashes(t, 9, "TestSignManyTrust")
	sigs, err := c.SignMany(ctx, hashes)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.PublicationsFile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pf, err := ksi.ParsePublicationsFile(b)
	if err != nil {
		t.Fatal(err)
	}
	for i, sig := range sigs {
		rep := verifier.Verify(ctx, sig, verifier.KeyBased, verifier.Options{Document: hashes[i], PublicationsFile: pf})
		if rep.Result != verifier.OK {
			t.Fatalf("signature %d, key-based: %s %s: %s", i, rep.Code, rep.Rule, rep.Message)
		}
	}
	for _, i := range []int{0, len(sigs) - 1} {
		rep := verifier.Verify(ctx, sigs[i], verifier.CalendarBased, verifier.Options{Document: hashes[i], Extender: client.CalendarExtender{Client: c}, ExtendingAllowed: true})
		if rep.Result != verifier.OK {
			t.Fatalf("signature %d, calendar-based: %s %s: %s", i, rep.Code, rep.Rule, rep.Message)
		}
	}
}

func TestSignManyAlgorithms(t *testing.T) {
	t.Parallel()
	addr := startServer(t, "")
	c := newClient(t, client.Config{Endpoints: []string{addr}})
	ctx := context.Background()
	var hashes []ksi.Imprint
	for i, a := range []ksi.HashAlg{ksi.SHA2_256, ksi.SHA2_512, ksi.SHA3_256, ksi.RIPEMD160, ksi.SHA2_384, ksi.SHA3_512, ksi.SHA3_384} {
		hashes = append(hashes, imprintOf(t, a, fmt.Sprint("TestSignManyAlgorithms ", i)))
	}
	for _, noMask := range []bool{false, true} {
		t.Run(fmt.Sprint("NoMask=", noMask), func(t *testing.T) {
			t.Parallel()
			res, err := c.SignManyEncoded(ctx, hashes, client.SignManyOptions{NoMask: noMask})
			if err != nil {
				t.Fatal(err)
			}
			sigs := verifyAll(t, res.Signatures, hashes)
			for i, sig := range sigs {
				if !sig.DocumentHash().Equal(hashes[i]) {
					t.Fatalf("signature %d: document hash %s, want %s", i, sig.DocumentHash(), hashes[i])
				}
			}
		})
	}
	t.Run("refused", func(t *testing.T) {
		sha1 := imprintOf(t, ksi.SHA1, "old")
		_, err := c.SignMany(ctx, []ksi.Imprint{docHash("a"), sha1})
		if !errors.Is(err, client.ErrInvalid) {
			t.Fatalf("SHA-1 hash: %v, want ErrInvalid", err)
		}
		t.Log(err)
		if _, err := c.SignMany(ctx, []ksi.Imprint{docHash("a"), {0x01, 0x02}}); !errors.Is(err, client.ErrInvalid) {
			t.Fatalf("malformed imprint: %v, want ErrInvalid", err)
		}
		if _, err := c.SignManyEncoded(ctx, []ksi.Imprint{docHash("a")}, client.SignManyOptions{PreviousLeaf: ksi.Imprint{0x01}}); !errors.Is(err, client.ErrInvalid) {
			t.Fatalf("malformed previous leaf: %v, want ErrInvalid", err)
		}
		if _, err := c.SignManyEncoded(ctx, []ksi.Imprint{docHash("a")}, client.SignManyOptions{NoMask: true, PreviousLeaf: ksi.ZeroLeaf()}); !errors.Is(err, client.ErrInvalid) {
			t.Fatalf("previous leaf without masks: %v, want ErrInvalid", err)
		}
	})
}

// TestSignManyNoMask shows what masks prevent: without them a signature
// carries its neighbour's document hash.
func TestSignManyNoMask(t *testing.T) {
	t.Parallel()
	addr := startServer(t, "")
	c := newClient(t, client.Config{Endpoints: []string{addr}})
	hashes := manyHashes(t, 6, "TestSignManyNoMask")
	for _, n := range []int{1, len(hashes)} {
		res, err := c.SignManyEncoded(context.Background(), hashes[:n], client.SignManyOptions{NoMask: true})
		if err != nil {
			t.Fatal(err)
		}
		verifyAll(t, res.Signatures, hashes[:n])
		if res.LastLeaf != nil {
			t.Fatalf("last leaf %s without masks", res.LastLeaf)
		}
		if n > 1 && !bytes.Contains(res.Signatures[0], hashes[1].Digest()) {
			t.Fatal("without masks, signature 0 does not hold its neighbour's hash")
		}
	}
}

// TestSignManyChained signs two batches, the second continuing the first
// (ksi-tool --prev-leaf): its first mask comes from the first batch's last
// leaf, which is the output of the first step of the first batch's last
// signature.
func TestSignManyChained(t *testing.T) {
	t.Parallel()
	addr := startServer(t, "")
	c := newClient(t, client.Config{Endpoints: []string{addr}})
	ctx := context.Background()
	a, b := manyHashes(t, 3, "chained a"), manyHashes(t, 4, "chained b")
	resA, err := c.SignManyEncoded(ctx, a, client.SignManyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sigsA := verifyAll(t, resA.Signatures, a)
	last := sigsA[len(sigsA)-1].Chains()[0]
	out, err := ksi.ChainOutput(new(ksi.Hasher), last.Algorithm, last.InputHash, 0, last.Links[:1])
	if err != nil {
		t.Fatal(err)
	}
	if !out.Hash.Equal(resA.LastLeaf) || out.Level != 1 {
		t.Fatalf("last leaf %s, the last signature's first step gives %s at level %d", resA.LastLeaf, out.Hash, out.Level)
	}
	resB, err := c.SignManyEncoded(ctx, b, client.SignManyOptions{PreviousLeaf: resA.LastLeaf, Rand: seedReader{9}})
	if err != nil {
		t.Fatal(err)
	}
	sigsB := verifyAll(t, resB.Signatures, b)
	want := maskOf(resA.LastLeaf, bytes.Repeat([]byte{9}, ksi.MaskSeedSize))
	if got := sigsB[0].Chains()[0].Links[0].Sibling; !bytes.Equal(got, want) {
		t.Fatalf("first mask of the second batch %x, want %x from the first batch's last leaf", got, want)
	}
	checkPrivate(t, append(resA.Signatures, resB.Signatures...), append(a, b...))
}

// TestSignManySplit signs against a server whose maximum level is 3: a
// tree holds 4 masked leaves, so 37 hashes take 10 requests.
func TestSignManySplit(t *testing.T) {
	t.Parallel()
	addr := startNodeMaxLevel(t, 3)
	c := newClient(t, client.Config{Endpoints: []string{addr}})
	ctx := context.Background()
	hashes := manyHashes(t, 37, "TestSignManySplit")
	t.Run("told", func(t *testing.T) {
		t.Parallel()
		res, err := c.SignManyEncoded(ctx, hashes, client.SignManyOptions{MaxLevel: 3})
		if err != nil {
			t.Fatal(err)
		}
		if res.Requests != 10 {
			t.Fatalf("%d requests, want 10", res.Requests)
		}
		verifyAll(t, res.Signatures, hashes)
		checkPrivate(t, res.Signatures, hashes)
	})
	t.Run("refused and retried", func(t *testing.T) {
		t.Parallel()
		// At the default maximum the one tree (level 7) is refused; the
		// server names its maximum and the batch is split to fit it.
		res, err := c.SignManyEncoded(ctx, hashes, client.SignManyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Requests != 11 {
			t.Fatalf("%d requests, want 1 refused and 10", res.Requests)
		}
		verifyAll(t, res.Signatures, hashes)
	})
	t.Run("max level 1", func(t *testing.T) {
		t.Parallel()
		small := startNodeMaxLevel(t, 1)
		c := newClient(t, client.Config{Endpoints: []string{small}})
		// Level 1 holds one masked leaf per request.
		res, err := c.SignManyEncoded(ctx, hashes[:3], client.SignManyOptions{MaxLevel: 1})
		if err != nil || res.Requests != 3 {
			t.Fatalf("max level 1: %v, %d requests, want 3", err, res.Requests)
		}
		verifyAll(t, res.Signatures, hashes[:3])
		// With NoMask, max level 1 holds two.
		res, err = c.SignManyEncoded(ctx, hashes[:3], client.SignManyOptions{MaxLevel: 1, NoMask: true})
		if err != nil || res.Requests != 2 {
			t.Fatalf("max level 1 without masks: %v, %d requests, want 2", err, res.Requests)
		}
		verifyAll(t, res.Signatures, hashes[:3])
	})
}

// TestSignManyDocsSHA512 checks the privacy property for long imprints:
// a SHA-512 document's digest must not appear in a neighbour's signature.
func TestSignManyDocsSHA512(t *testing.T) {
	t.Parallel()
	addr := startServer(t, "")
	c := newClient(t, client.Config{Endpoints: []string{addr}})
	hashes := make([]ksi.Imprint, 8)
	for i := range hashes {
		d := sha512.Sum512([]byte(fmt.Sprint("TestSignManyDocsSHA512 ", i)))
		hashes[i] = append(ksi.Imprint{byte(ksi.SHA2_512)}, d[:]...)
	}
	res, err := c.SignManyEncoded(context.Background(), hashes, client.SignManyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkPrivate(t, res.Signatures, hashes)
	verifyAll(t, res.Signatures, hashes)
}
