package client

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"regexp"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/round"
)

// Defaults of [SignManyOptions].
const (
	// DefaultMaxLevel is the highest request level SignMany sends: the
	// default maximum level of a Tempel server, the one the reference
	// tools can apply as they are. A request's tree then holds 2^20
	// document hashes without masks, 2^19 with them.
	DefaultMaxLevel = 20
	// DefaultSignManyConcurrency bounds the requests of one SignMany in
	// flight at once.
	DefaultSignManyConcurrency = 4
)

// SignManyOptions configure [Client.SignManyWith] and
// [Client.SignManyEncoded]. The zero value is the default: masked, from
// the zero leaf, at most [DefaultMaxLevel].
type SignManyOptions struct {
	// NoMask aggregates the document hashes themselves: every signature
	// then shows its neighbours' hashes as siblings. Use it only when the
	// hashes are no secret (ksi-tool without --mask).
	NoMask bool
	// PreviousLeaf is the last masked leaf of a previous batch
	// ([SignManyResult].LastLeaf) to chain this one to (ksi-tool
	// --prev-leaf); nil starts from the zero leaf. It needs masks: with
	// NoMask it is refused.
	PreviousLeaf ksi.Imprint
	// MaxLevel is the highest request level to send (0: DefaultMaxLevel);
	// set it to the server's maximum when that is lower. A batch whose
	// tree would be higher is split into requests that fit. If the server
	// still refuses a level as too high, the level it names (or one less)
	// is used and the refused part retried once.
	MaxLevel byte
	// Concurrency bounds the requests in flight (0:
	// DefaultSignManyConcurrency).
	Concurrency int
	// Rand is the source of the batch's mask seed (nil: crypto/rand). The
	// seed is never sent or returned.
	Rand io.Reader
}

// SignManyResult is what [Client.SignManyEncoded] returns.
type SignManyResult struct {
	// Signatures are the encoded signatures (.ksig bytes): Signatures[i]
	// belongs to hashes[i]. They share a few large buffers.
	Signatures [][]byte
	// LastLeaf is the masked leaf of the last hash: the PreviousLeaf of a
	// batch that continues this one. Nil with NoMask.
	LastLeaf ksi.Imprint
	// Requests is the number of signing requests sent.
	Requests int
	// Stats says where the time went.
	Stats SignManyStats
}

// SignManyStats is the time a SignMany spent in each phase, summed over
// the goroutines that ran it: requests overlap, and assembly and checking
// run on every core, so a figure may exceed the elapsed time.
type SignManyStats struct {
	Mask      time.Duration // masks and masked leaves (one goroutine)
	Tree      time.Duration // local trees
	RoundTrip time.Duration // requests, each with the root signature's verification
	Assembly  time.Duration // encoding each signature
	Check     time.Duration // checking each signature (see SignManyEncoded)
}

// SignMany is [Client.SignManyWith] with the default options: blinding
// masks, at most [DefaultMaxLevel].
func (c *Client) SignMany(ctx context.Context, hashes []ksi.Imprint) ([]*ksi.Signature, error) {
	return c.SignManyWith(ctx, hashes, SignManyOptions{})
}

// SignManyWith signs many hashes with as few requests as the maximum level
// allows, by local aggregation. sigs[i] belongs to hashes[i] and has
// passed the checks of [Client.SignManyEncoded].
func (c *Client) SignManyWith(ctx context.Context, hashes []ksi.Imprint, opts SignManyOptions) ([]*ksi.Signature, error) {
	if len(hashes) == 0 {
		return nil, nil
	}
	res, err := c.SignManyEncoded(ctx, hashes, opts)
	if err != nil {
		return nil, err
	}
	sigs := make([]*ksi.Signature, len(hashes))
	err = parallel(len(sigs), func(lo, hi int) error {
		for i := lo; i < hi; i++ {
			s, err := ksi.ParseSignature(res.Signatures[i])
			if err != nil {
				return fmt.Errorf("client: sign many: hash %d: %w", i, err)
			}
			sigs[i] = s
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return sigs, nil
}

// SignManyEncoded signs many hashes by local aggregation and returns the
// encoded signatures, for callers that store them as they are (parsing a
// million signatures costs more than making them).
//
// The hashes, imprints of any algorithm that is not deprecated, become
// the leaves of local hash trees (SHA-256); only each tree's root is sent,
// at the tree's level, and each hash's signature is the root's signature
// with the hash's path in its tree prepended as its lowest aggregation
// chain. The server sees one request and one leaf per tree.
//
// By default each leaf is blinded first (ksi.Masker, docs/design/masking.md):
// a mask derived from a random per-batch seed and the previous leaf is
// hashed with the document hash, so a signature shows no other document's
// hash, only values that the seed's holder alone could compute, as the
// reference block signers do.
//
// Every signature is checked before it is returned: the root's signature
// passed the internal policy against the root (SignLevel); each
// signature's chain is recomputed from its own bytes and its document
// hash up to that root at the root's level (steps shared with an already
// checked neighbour are recognised by their equal bytes instead of being
// hashed again); its chain index, aggregation time and input hash are
// those expected; the rest of its bytes equal the root signature's parts;
// and the first and last signature of each request pass the full internal
// policy.
func (c *Client) SignManyEncoded(ctx context.Context, hashes []ksi.Imprint, opts SignManyOptions) (*SignManyResult, error) {
	if len(hashes) == 0 {
		return &SignManyResult{}, nil
	}
	b, err := c.newBatch(hashes, opts)
	if err != nil {
		return nil, err
	}
	if err := b.run(ctx); err != nil {
		return nil, err
	}
	res := &SignManyResult{Signatures: b.out, Requests: int(b.requests.Load()), Stats: b.stats()}
	if b.masker != nil {
		res.LastLeaf = b.masker.Last()
	}
	return res, nil
}

// batch is one SignMany call.
type batch struct {
	c         *Client
	docs      []ksi.Imprint
	leaves    []ksi.Imprint // masked leaves, or docs without masks
	masks     []byte        // mask i at [i*innerSize:]
	masker    *ksi.Masker
	leafLevel byte
	maxLevel  atomic.Int32 // lowered when the server refuses a level
	conc      int
	out       [][]byte

	requests atomic.Int64
	// Phase times in nanoseconds.
	tMask, tTree, tRTT, tAssembly, tCheck atomic.Int64
}

func (c *Client) newBatch(hashes []ksi.Imprint, opts SignManyOptions) (*batch, error) {
	now := uint64(time.Now().Unix())
	for i, h := range hashes {
		if _, err := ksi.ParseImprint(h); err != nil {
			return nil, fmt.Errorf("%w: sign many: hash %d: %v", ErrInvalid, i, err)
		}
		if err := h.Alg().CheckSigning(now); err != nil {
			return nil, fmt.Errorf("%w: sign many: hash %d: %v", ErrInvalid, i, err)
		}
	}
	b := &batch{c: c, docs: hashes, conc: opts.Concurrency, out: make([][]byte, len(hashes))}
	if b.conc <= 0 {
		b.conc = DefaultSignManyConcurrency
	}
	maxLevel := opts.MaxLevel
	if maxLevel == 0 {
		maxLevel = DefaultMaxLevel
	}
	b.maxLevel.Store(int32(maxLevel))
	if opts.NoMask {
		if opts.PreviousLeaf != nil {
			return nil, fmt.Errorf("%w: sign many: a previous leaf chains masks, and NoMask turns them off", ErrInvalid)
		}
		b.leaves = hashes
		return b, nil
	}
	b.leafLevel = 1
	seed := make([]byte, ksi.MaskSeedSize)
	r := opts.Rand
	if r == nil {
		r = rand.Reader
	}
	if _, err := io.ReadFull(r, seed); err != nil {
		return nil, fmt.Errorf("client: sign many: mask seed: %w", err)
	}
	var err error
	if b.masker, err = ksi.NewMasker(seed, opts.PreviousLeaf); err != nil {
		return nil, fmt.Errorf("%w: sign many: %v", ErrInvalid, err)
	}
	clear(seed) // the masker keeps its own copy
	return b, nil
}

func (b *batch) stats() SignManyStats {
	return SignManyStats{Mask: time.Duration(b.tMask.Load()), Tree: time.Duration(b.tTree.Load()),
		RoundTrip: time.Duration(b.tRTT.Load()), Assembly: time.Duration(b.tAssembly.Load()), Check: time.Duration(b.tCheck.Load())}
}

// capacity returns how many leaves one request's tree holds at maxLevel.
func (b *batch) capacity(maxLevel int) int {
	h := maxLevel - int(b.leafLevel)
	switch {
	case h < 0:
		return 0
	case h >= 40:
		return 1 << 40
	}
	return 1 << h
}

// parts splits [0, n) into the fewest ranges of at most capacity leaves,
// of nearly equal sizes.
func parts(n, capacity int) [][2]int {
	k := (n + capacity - 1) / capacity
	out := make([][2]int, 0, k)
	for i := range k {
		out = append(out, [2]int{i * n / k, (i + 1) * n / k})
	}
	return out
}

// run signs the batch: leaves are masked in order, one request's range at
// a time, and each range is signed as soon as its leaves are ready, at
// most conc at once.
func (b *batch) run(ctx context.Context) error {
	maxLevel := int(b.maxLevel.Load())
	capacity := b.capacity(maxLevel)
	if capacity == 0 {
		return fmt.Errorf("%w: sign many: masking needs a maximum level of at least 1, have %d", ErrInvalid, maxLevel)
	}
	if b.masker != nil {
		b.masks = make([]byte, len(b.docs)*innerSize)
		arena := make([]byte, len(b.docs)*innerSize)
		b.leaves = make([]ksi.Imprint, len(b.docs))
		for i := range b.leaves {
			b.leaves[i] = arena[i*innerSize : (i+1)*innerSize : (i+1)*innerSize]
		}
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sem := make(chan struct{}, b.conc)
	var wg sync.WaitGroup
	for _, p := range parts(len(b.docs), capacity) {
		if b.masker != nil {
			start := time.Now()
			for i := p[0]; i < p[1]; i++ {
				b.masker.Next(b.docs[i], b.masks[i*innerSize:(i+1)*innerSize], b.leaves[i])
			}
			b.tMask.Add(int64(time.Since(start)))
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := b.signRange(ctx, p[0], p[1], false); err != nil {
				cancel(err)
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return nil
}

// signRange signs leaves [lo, hi) in one request, or in several if the
// range does not fit the maximum level (which a refusal may have lowered).
func (b *batch) signRange(ctx context.Context, lo, hi int, retried bool) error {
	maxLevel := int(b.maxLevel.Load())
	capacity := b.capacity(maxLevel)
	if capacity == 0 {
		return fmt.Errorf("%w: sign many: the server's maximum level %d leaves no room for masks", ErrInvalid, maxLevel)
	}
	if hi-lo > capacity {
		// Only after a refusal lowered the level: the pieces go at most
		// conc at a time, under the one slot of the refused range.
		ps := parts(hi-lo, capacity)
		errs := make([]error, len(ps))
		sem := make(chan struct{}, b.conc)
		var wg sync.WaitGroup
		for k, p := range ps {
			sem <- struct{}{}
			if ctx.Err() != nil {
				break
			}
			wg.Go(func() {
				defer func() { <-sem }()
				errs[k] = b.signRange(ctx, lo+p[0], lo+p[1], retried)
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return err
			}
		}
		return ctx.Err()
	}
	if hi-lo == 1 && b.masker == nil {
		// A lone document hash has no local tree: it is signed as it is.
		start := time.Now()
		b.requests.Add(1)
		sig, err := b.c.SignLevel(ctx, b.docs[lo], 0)
		b.tRTT.Add(int64(time.Since(start)))
		if err != nil {
			return err
		}
		b.out[lo] = sig.Raw
		return nil
	}
	start := time.Now()
	tree, err := buildLocalTree(b.leaves[lo:hi], b.leafLevel)
	if err != nil {
		return fmt.Errorf("%w: sign many: %v", ErrInvalid, err)
	}
	root, level := tree.Root()
	b.tTree.Add(int64(time.Since(start)))

	start = time.Now()
	b.requests.Add(1)
	rootSig, err := b.c.SignLevel(ctx, root, level)
	b.tRTT.Add(int64(time.Since(start)))
	if err != nil {
		if m, ok := levelRefused(err, level); ok && !retried {
			lowerTo(&b.maxLevel, m)
			return b.signRange(ctx, lo, hi, true)
		}
		return err
	}
	ans, err := round.AnswerFromSignature(rootSig, level)
	if err != nil {
		return fmt.Errorf("%w: sign many: %v", ErrBadResponse, err)
	}
	return b.assemble(ctx, tree, ans, lo, hi)
}

// levelTooHigh finds the maximum a server names when it refuses a level
// ("aggregator: request level above the maximum: level 21, maximum 20").
var levelTooHigh = regexp.MustCompile(`level.*maximum (\d+)`)

// levelRefused reports whether err refuses a request at level as too
// high, and the level to use instead: the maximum the server names, else
// one less.
func levelRefused(err error, level byte) (int, bool) {
	if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrOutOfRange) {
		return 0, false
	}
	m := levelTooHigh.FindStringSubmatch(err.Error())
	if m == nil {
		return 0, false
	}
	n, perr := strconv.Atoi(m[1])
	if perr != nil || n >= int(level) {
		n = int(level) - 1
	}
	return max(n, 0), true
}

// lowerTo lowers v to n unless it is already lower.
func lowerTo(v *atomic.Int32, n int) {
	for {
		cur := v.Load()
		if int(cur) <= n || v.CompareAndSwap(cur, int32(n)) {
			return
		}
	}
}

// assemble encodes and checks the signatures of leaves [lo, hi) on every
// core, a block of leaves at a time: the block's signatures are checked
// while still in cache.
func (b *batch) assemble(ctx context.Context, tree *ksi.Tree, ans *round.Answer, lo, hi int) error {
	root, level := tree.Root()
	err := parallel(hi-lo, func(from, to int) error {
		w := newSigWriter(b, tree, ans, lo)
		start := time.Now()
		if err := w.reserve(from, to); err != nil {
			return err
		}
		b.tAssembly.Add(int64(time.Since(start)))
		ck := newSigChecker(ans, root, level)
		const block = 256
		for s := from; s < to; s += block {
			if err := ctx.Err(); err != nil {
				return err
			}
			e := min(s+block, to)
			start := time.Now()
			for j := s; j < e; j++ {
				sig, err := w.signature(j)
				if err != nil {
					return fmt.Errorf("client: sign many: hash %d: %w", lo+j, err)
				}
				b.out[lo+j] = sig
			}
			mid := time.Now()
			for j := s; j < e; j++ {
				if err := ck.check(b.out[lo+j], b.docs[lo+j]); err != nil {
					return fmt.Errorf("%w: sign many: hash %d: %v", ErrBadResponse, lo+j, err)
				}
			}
			b.tAssembly.Add(int64(mid.Sub(start)))
			b.tCheck.Add(int64(time.Since(mid)))
		}
		return nil
	})
	if err != nil {
		return err
	}
	// The full policy on the range's first and last signature, in case
	// the cheap check above misses something the verifier knows.
	start := time.Now()
	defer func() { b.tCheck.Add(int64(time.Since(start))) }()
	for _, i := range []int{lo, hi - 1} {
		if err := verifyLeaf(ctx, b.out[i], b.docs[i]); err != nil {
			return fmt.Errorf("%w: sign many: hash %d: %v", ErrBadResponse, i, err)
		}
	}
	return nil
}

// sigWriter encodes one worker's signatures into shared chunks with ksi's
// signature writer (ksi.SharedHead: the heads of one request), in the
// layout of ksi/round's joined signatures: the leaf's aggregation chain
// (aggregation time, the answer's chain index and the leaf's shape, the
// document hash, SHA-256, then the links: the mask link and the path in
// the local tree, both encoded by ksi), then the server's elements. The
// links are copied straight from the tree into place.
type sigWriter struct {
	b     *batch
	tree  *ksi.Tree
	ans   *round.Answer
	lo    int
	head  ksi.SharedHead // what every leaf's head shares: time, chain index, algorithm
	chunk []byte
}

func newSigWriter(b *batch, tree *ksi.Tree, ans *round.Answer, lo int) *sigWriter {
	head := ksi.ChainHead{AggregationTime: ans.AggregationTime, ChainIndex: ans.ChainIndex, Algorithm: ksi.SHA2_256}
	return &sigWriter{b: b, tree: tree, ans: ans, lo: lo, head: head.Shared()}
}

// layout returns the shape and the encoded lengths of the signature of
// the request's leaf j.
func (w *sigWriter) layout(j int) (uint64, ksi.SignatureLayout, error) {
	shape, depth := w.tree.PathShape(j)
	links := w.tree.PathLen(j)
	if w.b.masker != nil {
		// The mask link is a right link below the path: one more bit,
		// clear, at the bottom of the shape.
		shape, depth = shape<<1, depth+1
		links += ksi.MaskLinkLen
	}
	if depth >= 64 {
		return 0, ksi.SignatureLayout{}, errors.New("chain longer than 63 links")
	}
	l, err := w.head.Layout(shape, w.b.docs[w.lo+j], links, len(w.ans.Elements))
	return shape, l, err
}

// reserve makes room for the signatures of leaves [from, to) in one
// buffer, so that they are written with no further allocation.
func (w *sigWriter) reserve(from, to int) error {
	total := 0
	for j := from; j < to; j++ {
		_, l, err := w.layout(j)
		if err != nil {
			return fmt.Errorf("client: sign many: hash %d: %w", w.lo+j, err)
		}
		total += l.Len()
	}
	w.chunk = make([]byte, 0, total)
	adviseHugePages(w.chunk[:total])
	return nil
}

// signature encodes the signature of the request's leaf j.
func (w *sigWriter) signature(j int) ([]byte, error) {
	i := w.lo + j
	shape, l, err := w.layout(j)
	if err != nil {
		return nil, err
	}
	n := l.Len()
	if cap(w.chunk)-len(w.chunk) < n {
		w.chunk = make([]byte, 0, max(n, 1<<20))
	}
	dst := w.chunk[len(w.chunk):len(w.chunk):cap(w.chunk)]
	dst = w.head.AppendSignatureHead(dst, l, shape, w.b.docs[i])
	if w.b.masker != nil {
		dst = ksi.AppendMaskLink(dst, w.b.masks[i*innerSize:])
	}
	dst = w.tree.AppendPathBytes(dst, j)
	dst = append(dst, w.ans.Elements...)
	if len(dst) != n {
		return nil, fmt.Errorf("signature of %d bytes, %d expected", len(dst), n)
	}
	w.chunk = w.chunk[:len(w.chunk)+n]
	return dst[:n:n], nil
}

// parallel runs f over [0, n) split into one contiguous range per core
// and returns the first error.
func parallel(n int, f func(lo, hi int) error) error {
	k := min(runtime.GOMAXPROCS(0), max(n/1024, 1))
	if k == 1 {
		return f(0, n)
	}
	errs := make([]error, k)
	var wg sync.WaitGroup
	for w := range k {
		wg.Go(func() { errs[w] = f(w*n/k, (w+1)*n/k) })
	}
	wg.Wait()
	return errors.Join(errs...)
}
