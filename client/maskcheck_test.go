package client

import (
	"crypto/sha256"
	"fmt"
	"testing"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/round"
	"github.com/tempel-ksi/tempel/ksi/tlv"
)

// localBatch masks n document hashes and builds their tree, as SignMany
// does before sending the root.
func localBatch(t *testing.T, n int) (*batch, *ksi.Tree) {
	t.Helper()
	m, err := ksi.NewMasker([]byte("seed"), nil)
	if err != nil {
		t.Fatal(err)
	}
	b := &batch{masker: m, leafLevel: 1, docs: make([]ksi.Imprint, n), leaves: make([]ksi.Imprint, n), masks: make([]byte, n*innerSize)}
	for i := range n {
		d := sha256.Sum256([]byte(fmt.Sprint("doc ", i)))
		b.docs[i] = append(ksi.Imprint{byte(ksi.SHA2_256)}, d[:]...)
		b.leaves[i] = make([]byte, innerSize)
		m.Next(b.docs[i], b.masks[i*innerSize:], b.leaves[i])
	}
	tree, err := buildLocalTree(b.leaves, 1)
	if err != nil {
		t.Fatal(err)
	}
	return b, tree
}

// TestSigCheckerRefuses assembles the signatures of a local tree (with a
// made-up answer: the checker compares the server's part, it does not
// verify it) and damages one byte at a time in each region of a
// signature: the checker must refuse every damaged one, including after
// its neighbours were checked and their states remembered.
func TestSigCheckerRefuses(t *testing.T) {
	const n = 37
	b, tree := localBatch(t, n)
	ans := &round.Answer{AggregationTime: 1_700_000_000, ChainIndex: []uint64{3, 5}, Elements: []byte{0x88, 0x02, 0x00, 0x03, 0x01, 0x01, 0x07}}
	w := newSigWriter(b, tree, ans, 0)
	if err := w.reserve(0, n); err != nil {
		t.Fatal(err)
	}
	sigs := make([][]byte, n)
	for j := range n {
		var err error
		if sigs[j], err = w.signature(j); err != nil {
			t.Fatal(err)
		}
	}
	root, level := tree.Root()
	ck := newSigChecker(ans, root, level)
	for j, sig := range sigs {
		if err := ck.check(sig, b.docs[j]); err != nil {
			t.Fatalf("signature %d: %v", j, err)
		}
	}
	// The regions of signature j, by offset: see sigWriter.signature.
	for _, j := range []int{0, 1, 18, n - 1} {
		sig := sigs[j]
		chainEnd := len(sig) - len(ans.Elements)
		// head ends after the chain index above the local chain: the
		// signature's and the chain's headers, then the time and the
		// entries, each a two-byte header and its value.
		head := 8 + 2 + tlv.UintLen(ans.AggregationTime)
		for _, x := range ans.ChainIndex {
			head += 2 + tlv.UintLen(x)
		}
		for _, at := range []struct {
			name string
			off  int
		}{
			{"aggregation time", 8 + 2},
			{"chain index", head - 1},
			{"shape", head + 2},
			{"document hash", head + 2 + 1 + 2 + 5},
			{"mask", chainEnd - tree.PathLen(j) - 10},
			{"lowest path sibling", chainEnd - tree.PathLen(j) + 10},
			{"highest path sibling", chainEnd - 3},
			{"server part", len(sig) - 1},
		} {
			bad := append([]byte(nil), sig...)
			bad[at.off] ^= 0x01
			// A fresh checker that has seen every good signature: damage
			// must not hide behind a remembered state.
			ck := newSigChecker(ans, root, level)
			for k := range sigs {
				if err := ck.check(sigs[k], b.docs[k]); err != nil {
					t.Fatal(err)
				}
			}
			if err := ck.check(bad, b.docs[j]); err == nil {
				t.Errorf("signature %d with its %s damaged passes", j, at.name)
			}
		}
		// Another document's signature, and a signature for another root.
		if err := ck.check(sig, b.docs[(j+1)%n]); err == nil {
			t.Errorf("signature %d passes for document %d", j, (j+1)%n)
		}
		other := newSigChecker(ans, b.leaves[0], level)
		if err := other.check(sig, b.docs[j]); err == nil {
			t.Errorf("signature %d passes for another root", j)
		}
	}
}
