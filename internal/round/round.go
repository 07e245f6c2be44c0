// Package round turns one round of signing requests into signatures: it
// builds the round tree once, and for each request joins its path in the
// tree with the one answer from upstream (DESIGN.md §2, §9). The
// aggregator's rounds and the calendar's per-second top tree both use it.
package round

import (
	"errors"
	"fmt"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/tlv"
)

// Request is one hash to sign.
type Request struct {
	Hash  ksi.Imprint
	Level byte   // tree level of Hash (0 for a document hash)
	Meta  []byte // metadata element value naming the caller; nil for none
}

// Round is a built round tree.
type Round struct {
	alg   ksi.HashAlg
	reqs  []Request
	tree  *ksi.Tree
	root  ksi.Imprint
	level byte
}

// ErrLevel is returned for a request whose level leaves no room in the tree.
var ErrLevel = errors.New("round: request level too high")

// Build hashes each request with its metadata (the caller's identity is
// the first step above the document hash, ksi-spec §4.4) and builds the
// round tree over the results.
func Build(alg ksi.HashAlg, reqs []Request) (*Round, error) {
	leaves := make([]ksi.TreeLeaf, len(reqs))
	var h ksi.Hasher
	size := 1 + alg.Size()
	arena := make([]byte, 0, len(reqs)*size)
	for i, r := range reqs {
		if r.Hash.Alg() != alg || len(r.Hash) != size {
			return nil, fmt.Errorf("round: request %d: hash is not %s", i, alg)
		}
		if r.Meta == nil {
			leaves[i] = ksi.TreeLeaf{Hash: r.Hash, Level: r.Level}
			continue
		}
		if r.Level >= 0xFF {
			return nil, ErrLevel
		}
		out, err := h.AggregationStep(alg, r.Hash, r.Meta, true, r.Level+1)
		if err != nil {
			return nil, err
		}
		arena = append(arena, out...)
		leaves[i] = ksi.TreeLeaf{Hash: arena[len(arena)-size:], Level: r.Level + 1}
	}
	tree, err := ksi.BuildTree(alg, leaves)
	if err != nil {
		return nil, err
	}
	root, lvl := tree.Root()
	return &Round{alg: alg, reqs: reqs, tree: tree, root: root, level: lvl}, nil
}

// Root returns the round root and its level: what is signed upstream.
func (r *Round) Root() (ksi.Imprint, byte) { return r.root, r.level }

// Len returns the number of requests.
func (r *Round) Len() int { return len(r.reqs) }

// Answer is what upstream returned for the round root: a signature of the
// root, split into the parts each request's signature shares.
type Answer struct {
	AggregationTime uint64
	// ChainIndex of upstream's lowest aggregation chain; empty when the
	// upstream is the calendar itself.
	ChainIndex []uint64
	// Elements are upstream's signature elements (its aggregation
	// chains, calendar chain, authentication or publication record),
	// concatenated as encoded.
	Elements []byte
}

// AnswerFromSignature splits upstream's signature of the round root (at
// level rootLevel) into an Answer.
//
// Upstream signs the root as any caller's hash at a level: its lowest
// chain starts at level 0 and its first link's level correction carries
// rootLevel (GEN-03). Below our own chain, which ends at rootLevel, that
// chain continues from rootLevel instead, so the correction is lowered by
// rootLevel. The correction is not hashed: the chain's hashes, and so the
// signature's validity, are unchanged.
func AnswerFromSignature(sig *ksi.Signature, rootLevel byte) (*Answer, error) {
	lowest := sig.Chains()[0]
	if lowest.Links[0].LevelCorrection < uint64(rootLevel) {
		return nil, fmt.Errorf("round: upstream's first level correction %d is below the root level %d", lowest.Links[0].LevelCorrection, rootLevel)
	}
	adjusted := lowest
	if rootLevel > 0 {
		links := append([]ksi.Link(nil), lowest.Links...)
		links[0].LevelCorrection -= uint64(rootLevel)
		var err error
		adjusted, err = ksi.NewAggregationChain(lowest.AggregationTime, lowest.ChainIndex, lowest.InputHash, lowest.Algorithm, links)
		if err != nil {
			return nil, err
		}
	}
	outer, err := tlv.ReadOne(sig.Raw)
	if err != nil {
		return nil, err
	}
	children, err := outer.Children()
	if err != nil {
		return nil, err
	}
	elems := make([]byte, 0, len(outer.Value))
	for _, c := range children {
		if c.Type == ksi.TypeAggregationChain && &c.Raw[0] == &lowest.Raw[0] {
			elems = append(elems, adjusted.Raw...)
			continue
		}
		elems = append(elems, c.Raw...)
	}
	return &Answer{AggregationTime: lowest.AggregationTime, ChainIndex: lowest.ChainIndex, Elements: elems}, nil
}

// Writer encodes requests' signatures, reusing its buffers. One Writer
// per goroutine.
type Writer struct {
	links []ksi.Link
	b     tlv.Builder
}

// AppendSignature appends the complete signature (TLV 0x800) of request i:
// its own aggregation chain, then upstream's elements.
func (w *Writer) AppendSignature(dst []byte, r *Round, i int, ans *Answer) ([]byte, error) {
	req := &r.reqs[i]
	links := w.links[:0]
	if req.Meta != nil {
		links = append(links, ksi.Link{Left: true, LevelCorrection: uint64(req.Level), Metadata: &ksi.Metadata{Value: req.Meta}})
	}
	first := len(links)
	links = r.tree.AppendPath(links, i)
	if req.Meta == nil && len(links) > 0 {
		// The chain starts at level 0: the first link carries the input's level.
		links[first].LevelCorrection += uint64(req.Level)
	}
	w.links = links
	if len(links) == 0 {
		return nil, errors.New("round: a one-request round without metadata has no hash step to sign")
	}
	// Size the output once: per link at most a 4-byte header, a level
	// correction and the sibling; the rest is small and fixed.
	need := 64 + len(ans.Elements) + len(req.Hash) + 9*(len(ans.ChainIndex)+1) + len(req.Meta) + len(links)*(8+len(req.Hash))
	if cap(dst)-len(dst) < need {
		dst = append(make([]byte, 0, len(dst)+need), dst...)
	}
	b := &w.b
	b.ResetTo(dst)
	b.Begin(ksi.TypeSignature, false, false)
	b.Begin(ksi.TypeAggregationChain, false, false)
	b.Uint(0x02, ans.AggregationTime)
	for _, x := range ans.ChainIndex {
		b.Uint(0x03, x)
	}
	b.Uint(0x03, ksi.LinksShape(links))
	b.Bin(0x05, req.Hash)
	b.Uint(0x06, uint64(r.alg))
	for j := range links {
		ksi.AppendLink(b, &links[j])
	}
	b.End()
	b.Raw(ans.Elements)
	b.End()
	return b.Bytes()
}
