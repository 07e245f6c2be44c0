package ksi_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/tempel-ksi/tempel/internal/testpack"
	"github.com/tempel-ksi/tempel/ksi"
)

// TestMaskerLibksiVector rebuilds the block of libksi's testMasking
// (test/ksi_blocksigner_test.c): 101 copies of one SHA-256 hash, masked
// with the initial value below from the zero leaf, aggregated by libksi's
// tree builder. The root must be the input hash of the lowest chain of
// the aggregator response recorded for that test
// (tlv/v2/test_masking_response.tlv), which libksi checks against its own
// root: the masks are the reference block signer's, bit for bit. (The
// text dump next to that file, tlv/txt/v2/test_masking_response.tlv.txt,
// is of an older recording and shows another root.)
func TestMaskerLibksiVector(t *testing.T) {
	resp := testpack.Read(t, "tlv", "v2", "test_masking_response.tlv")
	wantRoot, _ := hex.DecodeString("01f6c52045de5f79b87651312284114cd76536009f30126af5ed53fab4652e2b86")
	// The response's first aggregation chain: 05 21 <root>.
	if !bytes.Contains(resp, append([]byte{0x05, 0x21}, wantRoot...)) {
		t.Fatalf("the recorded response does not carry the expected root as a chain input hash")
	}
	doc, _ := hex.DecodeString("01004313f53502a18fe4a31ae0197ab09d4597042942a3a54e846fa01ff5479fa2")
	iv := []byte{0x01, 0x02, 0xff, 0xfe, 0xaa, 0xa9, 0xf1, 0x55, 0x23, 0x51, 0xa1}
	m, err := ksi.NewMasker(iv, nil)
	if err != nil {
		t.Fatal(err)
	}
	type node struct {
		hash  []byte
		level byte
	}
	join := func(l, r node) node {
		lvl := max(l.level, r.level) + 1
		s := sha256.Sum256(append(append(append([]byte(nil), l.hash...), r.hash...), lvl))
		return node{append([]byte{byte(ksi.SHA2_256)}, s[:]...), lvl}
	}
	// libksi's builder: a binary counter of complete subtrees (slot k
	// holds 2^k leaves), merged at close from the lowest slot up, each
	// slot's subtree joined as the left child of what is below it.
	var stack [16]*node
	for range 101 {
		mask, leaf := make([]byte, 33), make([]byte, 33)
		m.Next(doc, mask, leaf)
		// The leaf is the aggregation step of the document under its mask.
		if got := join(node{mask, 0}, node{doc, 0}); !bytes.Equal(got.hash, leaf) || got.level != 1 {
			t.Fatalf("leaf is not the step of (mask, document) at level 1")
		}
		n := &node{leaf, 1}
		for k := 0; ; k++ {
			if stack[k] == nil {
				stack[k] = n
				break
			}
			j := join(*stack[k], *n)
			n, stack[k] = &j, nil
		}
	}
	var root *node
	for _, n := range stack {
		switch {
		case n == nil:
		case root == nil:
			root = n
		default:
			j := join(*n, *root)
			root = &j
		}
	}
	if !bytes.Equal(root.hash, wantRoot) {
		t.Fatalf("root %x, libksi's %x", root.hash, wantRoot)
	}
	if root.level != 8 {
		t.Fatalf("root level %d, want 8 (101 leaves at level 1)", root.level)
	}
	if last := m.Last(); len(last) != 33 || last[0] != byte(ksi.SHA2_256) {
		t.Fatalf("last leaf %x is not a SHA-256 imprint", last)
	}
}

func TestMaskerInputs(t *testing.T) {
	if _, err := ksi.NewMasker(nil, nil); err == nil {
		t.Fatal("empty seed accepted")
	}
	if _, err := ksi.NewMasker(make([]byte, 65), nil); err == nil {
		t.Fatal("65-byte seed accepted")
	}
	if _, err := ksi.NewMasker([]byte{1}, ksi.Imprint{0x01, 0x02}); err == nil {
		t.Fatal("malformed previous leaf accepted")
	}
	// A previous leaf changes every mask; the same seed and start give the
	// same masks (what makes a batch reproducible by the seed's holder).
	seed := bytes.Repeat([]byte{7}, ksi.MaskSeedSize)
	doc := append(ksi.Imprint{byte(ksi.SHA2_512)}, make([]byte, 64)...)
	masks := func(prev ksi.Imprint) [2][]byte {
		m, err := ksi.NewMasker(seed, prev)
		if err != nil {
			t.Fatal(err)
		}
		var out [2][]byte
		for i := range out {
			out[i] = make([]byte, 33)
			m.Next(doc, out[i], make([]byte, 33))
		}
		return out
	}
	a, b := masks(nil), masks(ksi.ZeroLeaf())
	if !bytes.Equal(a[0], b[0]) || !bytes.Equal(a[1], b[1]) {
		t.Fatal("nil previous leaf is not the zero leaf")
	}
	other := append(ksi.Imprint{byte(ksi.SHA2_256)}, bytes.Repeat([]byte{1}, 32)...)
	if c := masks(other); bytes.Equal(c[0], a[0]) || bytes.Equal(c[1], a[1]) {
		t.Fatal("previous leaf does not change the masks")
	}
	if bytes.Equal(a[0], a[1]) {
		t.Fatal("two leaves got the same mask")
	}
	link := ksi.AppendMaskLink(nil, a[0])
	if len(link) != ksi.MaskLinkLen || link[0] != 0x08 {
		t.Fatalf("mask link % x", link)
	}
}
