package client

import (
	"bytes"
	"crypto/sha512"
	"errors"
	"fmt"
	"testing"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/round"
	"github.com/tempel-ksi/tempel/ksi/tlv"
)

// literalSigWriter is the SDK's signature writer as it was before the
// signature bytes moved into ksi, frozen here as the reference the
// writer on ksi's encoders must match byte for byte. It is not used
// outside this test.
type literalSigWriter struct {
	b    *batch
	tree *ksi.Tree
	ans  *round.Answer
	lo   int
	head []byte
}

func newLiteralSigWriter(b *batch, tree *ksi.Tree, ans *round.Answer, lo int) *literalSigWriter {
	head := literalUint(nil, 0x02, ans.AggregationTime)
	for _, x := range ans.ChainIndex {
		head = literalUint(head, 0x03, x)
	}
	return &literalSigWriter{b: b, tree: tree, ans: ans, lo: lo, head: head}
}

func (w *literalSigWriter) signature(dst []byte, j int) ([]byte, error) {
	i := w.lo + j
	doc := w.b.docs[i]
	shape, depth := w.tree.PathShape(j)
	links := w.tree.PathLen(j)
	if w.b.masker != nil {
		shape, depth = shape<<1, depth+1
		links += ksi.MaskLinkLen
	}
	if depth >= 64 {
		return nil, errors.New("chain longer than 63 links")
	}
	chain := len(w.head) + 2 + tlv.UintLen(shape) + 2 + len(doc) + 3 + links
	body := 4 + chain + len(w.ans.Elements)
	if body > tlv.MaxValueLen {
		return nil, fmt.Errorf("signature of %d bytes exceeds the TLV limit", body)
	}
	dst = append(dst, 0x88, 0x00, byte(body>>8), byte(body), 0x88, 0x01, byte(chain>>8), byte(chain))
	dst = append(dst, w.head...)
	dst = literalUint(dst, 0x03, shape)
	dst = append(dst, 0x05, byte(len(doc)))
	dst = append(dst, doc...)
	dst = append(dst, 0x06, 0x01, byte(ksi.SHA2_256))
	if w.b.masker != nil {
		dst = ksi.AppendMaskLink(dst, w.b.masks[i*innerSize:])
	}
	dst = w.tree.AppendPathBytes(dst, j)
	return append(dst, w.ans.Elements...), nil
}

func literalUint(dst []byte, typ byte, x uint64) []byte {
	dst = append(dst, typ, byte(tlv.UintLen(x)))
	return tlv.AppendUintValue(dst, x)
}

// modelSignature encodes leaf j's signature with ksi's general encoders
// (the parsed model's chain inside a tlv.Builder signature), from the
// tree's nodes rather than its prepared links.
func modelSignature(t *testing.T, b *batch, tree *ksi.Tree, ans *round.Answer, lo, j int) []byte {
	t.Helper()
	var links []ksi.Link
	if b.masker != nil {
		links = append(links, ksi.Link{Sibling: b.masks[(lo+j)*innerSize : (lo+j+1)*innerSize]})
	}
	links = append(links, tree.Path(j)...)
	shape := uint64(1) << len(links)
	for k, l := range links {
		if l.Left {
			shape |= 1 << k
		}
	}
	index := append(append([]uint64{}, ans.ChainIndex...), shape)
	chain, err := ksi.NewAggregationChain(ans.AggregationTime, index, b.docs[lo+j], ksi.SHA2_256, links)
	if err != nil {
		t.Fatal(err)
	}
	tb := tlv.NewBuilder(nil)
	tb.Begin(ksi.TypeSignature, false, false)
	tb.Raw(chain.Raw)
	tb.Raw(ans.Elements)
	tb.End()
	sig, err := tb.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// The SDK's writer, now on ksi's signature writer, gives the bytes the
// literal writer gave and the bytes ksi's general encoders give, for
// masked and unmasked batches, requests that start inside the batch,
// documents of other algorithms, and answers with and without an
// upstream chain index; and the checker accepts every one.
func TestSignManyWriterSameBytes(t *testing.T) {
	masked, maskedTree := localBatch(t, 1000)
	plain := &batch{docs: make([]ksi.Imprint, 301)}
	for i := range plain.docs {
		if i%3 == 0 {
			d := sha512.Sum512([]byte(fmt.Sprint("doc ", i)))
			plain.docs[i] = append(ksi.Imprint{byte(ksi.SHA2_512)}, d[:]...)
		} else {
			plain.docs[i] = sha256Imprint(t, fmt.Sprint("doc ", i))
		}
	}
	plain.leaves = plain.docs
	answers := []*round.Answer{
		{AggregationTime: 1_700_000_000, Elements: []byte{0x88, 0x02, 0x00, 0x03, 0x01, 0x01, 0x07}},
		{AggregationTime: 1_700_000_000, ChainIndex: []uint64{3, 5}, Elements: bytes.Repeat([]byte{0x5A}, 2000)},
		{AggregationTime: 1 << 62, ChainIndex: []uint64{1 << 40, 0, 255}, Elements: []byte{0x01, 0x00}},
	}
	for _, c := range []struct {
		name   string
		b      *batch
		lo, hi int
		tree   *ksi.Tree
	}{
		{"masked", masked, 0, 1000, maskedTree},
		{"masked, second request", masked, 600, 1000, nil},
		{"no masks", plain, 0, 301, nil},
		{"no masks, second request", plain, 100, 301, nil},
	} {
		tree := c.tree
		if tree == nil {
			var err error
			if tree, err = buildLocalTree(c.b.leaves[c.lo:c.hi], c.b.leafLevel); err != nil {
				t.Fatal(err)
			}
		}
		root, level := tree.Root()
		for _, ans := range answers {
			w := newSigWriter(c.b, tree, ans, c.lo)
			if err := w.reserve(0, c.hi-c.lo); err != nil {
				t.Fatal(err)
			}
			old := newLiteralSigWriter(c.b, tree, ans, c.lo)
			ck := newSigChecker(ans, root, level)
			for j := range c.hi - c.lo {
				got, err := w.signature(j)
				if err != nil {
					t.Fatalf("%s, leaf %d: %v", c.name, j, err)
				}
				want, err := old.signature(nil, j)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("%s, time %d, leaf %d:\n got %x\nwant %x (the literal writer)", c.name, ans.AggregationTime, j, got, want)
				}
				if model := modelSignature(t, c.b, tree, ans, c.lo, j); !bytes.Equal(got, model) {
					t.Fatalf("%s, time %d, leaf %d:\n got %x\nwant %x (ksi's encoders)", c.name, ans.AggregationTime, j, got, model)
				}
				if err := ck.check(got, c.b.docs[c.lo+j]); err != nil {
					t.Fatalf("%s, time %d, leaf %d: the checker refuses it: %v", c.name, ans.AggregationTime, j, err)
				}
			}
		}
	}
}

// sha256Imprint hashes s with SHA-256.
func sha256Imprint(t *testing.T, s string) ksi.Imprint {
	t.Helper()
	m, err := ksi.SHA2_256.Digest([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// benchBatch is a masked request of n leaves and its answer, with a
// chain index above the local chain as an aggregator's answer has.
func benchBatch(b *testing.B, n int) (*batch, *ksi.Tree, *round.Answer) {
	m, err := ksi.NewMasker([]byte("seed"), nil)
	if err != nil {
		b.Fatal(err)
	}
	bt := &batch{masker: m, leafLevel: 1, docs: make([]ksi.Imprint, n), leaves: make([]ksi.Imprint, n), masks: make([]byte, n*innerSize)}
	for i := range n {
		d, err := ksi.SHA2_256.Digest([]byte(fmt.Sprint("doc ", i)))
		if err != nil {
			b.Fatal(err)
		}
		bt.docs[i] = d
		bt.leaves[i] = make([]byte, innerSize)
		m.Next(bt.docs[i], bt.masks[i*innerSize:], bt.leaves[i])
	}
	tree, err := buildLocalTree(bt.leaves, 1)
	if err != nil {
		b.Fatal(err)
	}
	ans := &round.Answer{AggregationTime: 1_700_000_000, ChainIndex: []uint64{3, 5}, Elements: bytes.Repeat([]byte{0x5A}, 1100)}
	return bt, tree, ans
}

// BenchmarkSignManyWriter compares the writer on ksi's signature writer
// with the literal one it replaced, per signature, over a request of
// 2^16 masked leaves written into one reserved buffer.
func BenchmarkSignManyWriter(b *testing.B) {
	const n = 1 << 16
	bt, tree, ans := benchBatch(b, n)
	b.Run("ksi", func(b *testing.B) {
		w := newSigWriter(bt, tree, ans, 0)
		if err := w.reserve(0, n); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			w.chunk = w.chunk[:0]
			for j := range n {
				if _, err := w.signature(j); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/sig")
	})
	b.Run("literal", func(b *testing.B) {
		w := newLiteralSigWriter(bt, tree, ans, 0)
		// The same kind of buffer as the other writer's.
		r := newSigWriter(bt, tree, ans, 0)
		if err := r.reserve(0, n); err != nil {
			b.Fatal(err)
		}
		buf := r.chunk
		b.ReportAllocs()
		for b.Loop() {
			buf = buf[:0]
			for j := range n {
				var err error
				if buf, err = w.signature(buf, j); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/sig")
	})
}

// BenchmarkSigChecker is the checker's cost per signature, over the same
// request as BenchmarkSignManyWriter.
func BenchmarkSigChecker(b *testing.B) {
	const n = 1 << 16
	bt, tree, ans := benchBatch(b, n)
	w := newSigWriter(bt, tree, ans, 0)
	if err := w.reserve(0, n); err != nil {
		b.Fatal(err)
	}
	sigs := make([][]byte, n)
	for j := range n {
		var err error
		if sigs[j], err = w.signature(j); err != nil {
			b.Fatal(err)
		}
	}
	root, level := tree.Root()
	b.ReportAllocs()
	for b.Loop() {
		ck := newSigChecker(ans, root, level)
		for j, sig := range sigs {
			if err := ck.check(sig, bt.docs[j]); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/sig")
}
