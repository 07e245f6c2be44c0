// Package round turns one round of signing requests into signatures: it
// builds the round tree once, and for each request joins its path in the
// tree with the one answer from upstream (docs/design/architecture.md#data-flow, docs/design/latency.md#work-per-request). The
// aggregator's rounds and the calendar's per-second top tree both use it;
// clients of the shared-round stream join the legs they get with their
// rounds' shared parts with a [Joiner]. The signature bytes are written by
// ksi ([ksi.ChainHead]); this package only lays them out.
package round

import (
	"errors"
	"fmt"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/tlv"
)

// Request is one hash to sign.
type Request struct {
	// Hash is any well-formed imprint: the round's algorithm hashes the
	// step above it, whatever its own algorithm (docs/design/formats.md#aggregation-hash-chains).
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
	// slack is how much longer than the round's imprints a sibling in a
	// request's path may be: a leaf without metadata of a longer
	// algorithm. A path meets at most two leaves: its own neighbour and
	// the last leaf, moved up unpaired.
	slack int
}

// ErrLevel is returned for a request whose level leaves no room in the tree.
var ErrLevel = errors.New("round: request level too high")

// Build hashes each request with its metadata (the caller's identity is
// the first step above the document hash, docs/design/formats.md#metadata) and builds the
// round tree over the results, hashing with alg. A request's hash may be
// of any algorithm; which algorithms a service accepts is its decision.
func Build(alg ksi.HashAlg, reqs []Request) (*Round, error) {
	leaves := make([]ksi.TreeLeaf, len(reqs))
	var h ksi.Hasher
	size := 1 + alg.Size()
	arena := make([]byte, 0, len(reqs)*size)
	slack := 0
	for i, r := range reqs {
		if len(r.Hash) != size || r.Hash.Alg() != alg {
			if _, err := ksi.ParseImprint(r.Hash); err != nil {
				return nil, fmt.Errorf("round: request %d: %w", i, err)
			}
			if r.Meta == nil {
				slack = max(slack, 2*(len(r.Hash)-size))
			}
		}
		if r.Meta == nil {
			leaves[i] = ksi.TreeLeaf{Hash: r.Hash, Level: r.Level}
			continue
		}
		if r.Level == 0xFF {
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
	tree.PrepareLinks()
	root, lvl := tree.Root()
	return &Round{alg: alg, reqs: reqs, tree: tree, root: root, level: lvl, slack: slack}, nil
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
	body  []byte
	first ksi.Link
	meta  ksi.Metadata
	chunk []byte // carved into signatures: one allocation per 256 KiB
}

// alloc returns an empty slice with capacity n, cut from a shared chunk:
// a round's signatures cost a few large allocations instead of one each.
func (w *Writer) alloc(n int) []byte {
	const chunkSize = 256 << 10
	if n > chunkSize/4 {
		return make([]byte, 0, n)
	}
	if cap(w.chunk)-len(w.chunk) < n {
		w.chunk = make([]byte, 0, chunkSize)
	}
	b := w.chunk[len(w.chunk) : len(w.chunk) : len(w.chunk)+n]
	w.chunk = w.chunk[:len(w.chunk)+n]
	return b
}

// AppendSignature appends the complete signature (TLV 0x800) of request i:
// its own aggregation chain, then upstream's elements.
func (w *Writer) AppendSignature(dst []byte, r *Round, i int, ans *Answer) ([]byte, error) {
	links, shape, err := w.AppendLeg(w.body[:0], r, i)
	w.body = links
	if err != nil {
		return nil, err
	}
	head := ksi.ChainHead{AggregationTime: ans.AggregationTime, ChainIndex: ans.ChainIndex, Shape: shape, Input: r.reqs[i].Hash, Algorithm: r.alg}
	l, err := head.Layout(len(links), len(ans.Elements))
	if err != nil {
		return nil, fmt.Errorf("round: %w", err)
	}
	if dst == nil {
		dst = w.alloc(l.Len())
	} else {
		dst = grow(dst, l.Len())
	}
	dst = head.AppendSignatureHead(dst, l)
	dst = append(dst, links...)
	return append(dst, ans.Elements...), nil
}

// AppendLeg appends request i's own part of its signature (to a new
// slice from the Writer's chunk when dst is nil), known as soon as the
// round is built: the encoded links of its aggregation chain (the
// metadata link, then its path through the round tree), and returns the
// chain's shape, the last chain index entry. AppendJoined makes the
// signature of it once upstream has answered.
func (w *Writer) AppendLeg(dst []byte, r *Round, i int) (links []byte, shape uint64, err error) {
	req := &r.reqs[i]
	// The metadata link is a left link below the path: one more bit, set,
	// at the bottom of the shape.
	shape, depth := r.tree.PathShape(i)
	if req.Meta != nil {
		shape, depth = shape<<1|1, depth+1
	}
	if depth == 0 {
		return dst, 0, errors.New("round: a one-request round without metadata has no hash step to sign")
	}
	if depth >= 64 {
		return dst, 0, errors.New("round: chain longer than 63 links")
	}
	if dst == nil {
		// Each link is at most a header, a level correction and an imprint.
		dst = w.alloc(depth*(8+r.alg.Size()) + r.slack + len(req.Meta) + 8)
	}
	if req.Meta != nil {
		w.meta.Value = req.Meta
		w.first = ksi.Link{Left: true, LevelCorrection: uint64(req.Level), Metadata: &w.meta}
		dst = ksi.AppendLinkBytes(dst, &w.first)
		return r.tree.AppendPathBytes(dst, i), shape, nil
	}
	// The chain starts at level 0: the first link carries the input's
	// level, so the links are encoded here rather than taken as bytes.
	path := r.tree.AppendPath(w.links[:0], i)
	path[0].LevelCorrection += uint64(req.Level)
	for j := range path {
		dst = ksi.AppendLinkBytes(dst, &path[j])
	}
	w.links = path
	return dst, shape, nil
}

// AppendJoined appends the complete signature of a request from its leg
// (hash, shape and links, as AppendLeg made them) and its round's answer:
// the request's aggregation chain, then upstream's elements. A [Joiner]
// does this for the legs and rounds of a shared-round stream.
func AppendJoined(dst []byte, ans *Answer, alg ksi.HashAlg, hash ksi.Imprint, shape uint64, links []byte) ([]byte, error) {
	head := ksi.ChainHead{AggregationTime: ans.AggregationTime, ChainIndex: ans.ChainIndex, Shape: shape, Input: hash, Algorithm: alg}
	l, err := head.Layout(len(links), len(ans.Elements))
	if err != nil {
		return dst, fmt.Errorf("round: %w", err)
	}
	dst = head.AppendSignatureHead(grow(dst, l.Len()), l)
	dst = append(dst, links...)
	return append(dst, ans.Elements...), nil
}

// grow returns dst with room for n more bytes, in one allocation.
func grow(dst []byte, n int) []byte {
	if cap(dst)-len(dst) < n {
		dst = append(make([]byte, 0, len(dst)+n), dst...)
	}
	return dst
}

// Alg returns the round's hash algorithm.
func (r *Round) Alg() ksi.HashAlg { return r.alg }
