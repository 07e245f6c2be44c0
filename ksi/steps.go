package ksi

import (
	"bytes"
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"math/bits"
	"sync"
)

// CalendarStepByte is appended to every calendar hash step in place of a
// level (docs/design/formats.md#calendar-hash-chains); aggregation steps append their level (0..255),
// so the two kinds of node are never confused.
const CalendarStepByte = 0xFF

// Errors of hash-chain computation.
var (
	ErrLevelOverflow = errors.New("ksi: hash chain level exceeds 255")
	ErrChainShape    = errors.New("ksi: calendar chain shape is malformed")
)

// Hasher computes hash-chain steps, reusing hash states between steps so
// that verifying a chain does not allocate. A Hasher is not safe for
// concurrent use; the zero value is ready.
type Hasher struct {
	states [len(algs)]hash.Hash
	out    [1 + 64]byte
	// scratch holds one step's input for the SHA-256 fast path: one call
	// to sha256.Sum256 instead of three writes through hash.Hash, or, for
	// steps of at most two blocks, the message with its padding.
	scratch [512]byte
	padded  paddedSHA256
}

// paddedSHA256 hashes a message that already carries its SHA-256 padding
// (FIPS 180-4 §5.1.1): after the last block, the state words are the
// digest, read through the standard hash's AppendBinary. That skips the
// buffering and padding work of sha256.Sum256, about a quarter of the
// cost of a 67-byte aggregation step, which is most of verifying.
// paddedSHA256Works checks the method once against sha256.Sum256.
type paddedSHA256 struct {
	d     hash.Hash
	state [4 + sha256.Size + sha256.BlockSize + 8]byte
}

// sha256StateMagic starts the standard library's encoded SHA-256 state,
// followed by the eight state words, big-endian.
const sha256StateMagic = "sha\x03"

// sum returns SHA-256 of msg[:n]; msg has room for the padding (n+9 bytes
// rounded up to the block size). The result is valid until the next call;
// nil means the state could not be read and the caller must hash normally.
func (p *paddedSHA256) sum(msg []byte, n int) []byte {
	end := (n + 9 + sha256.BlockSize - 1) / sha256.BlockSize * sha256.BlockSize
	msg[n] = 0x80
	clear(msg[n+1 : end-8])
	binary.BigEndian.PutUint64(msg[end-8:end], uint64(n)*8)
	if p.d == nil {
		p.d = sha256.New()
	}
	p.d.Reset()
	p.d.Write(msg[:end])
	ba, ok := p.d.(encoding.BinaryAppender)
	if !ok {
		return nil
	}
	st, err := ba.AppendBinary(p.state[:0])
	if err != nil || len(st) < 4+sha256.Size || string(st[:4]) != sha256StateMagic {
		return nil
	}
	return st[4 : 4+sha256.Size]
}

// paddedSHA256Works reports whether paddedSHA256 agrees with sha256.Sum256
// on every message length it is used for.
var paddedSHA256Works = sync.OnceValue(func() bool {
	var p paddedSHA256
	var msg [2 * sha256.BlockSize]byte
	for n := 0; n+9 <= len(msg); n++ {
		for i := range n {
			msg[i] = byte(i*31 + n)
		}
		want := sha256.Sum256(msg[:n])
		if got := p.sum(msg[:], n); !bytes.Equal(got, want[:]) {
			return false
		}
	}
	return true
})

func (h *Hasher) state(a HashAlg) (hash.Hash, error) {
	if int(a) >= len(h.states) {
		return nil, fmt.Errorf("%w: 0x%02x", ErrUnknownAlg, byte(a))
	}
	if s := h.states[a]; s != nil {
		s.Reset()
		return s, nil
	}
	s, err := a.New()
	if err != nil {
		return nil, err
	}
	h.states[a] = s
	return s, nil
}

// step returns imprint(a, H_a(x || y || tail)). The result is valid until
// the next call.
func (h *Hasher) step(a HashAlg, x, y []byte, tail byte) (Imprint, error) {
	if a == SHA2_256 && len(x)+len(y) < len(h.scratch) {
		n := copy(h.scratch[:], x)
		n += copy(h.scratch[n:], y)
		h.scratch[n] = tail
		n++
		h.out[0] = byte(SHA2_256)
		if n+9 <= 2*sha256.BlockSize && paddedSHA256Works() {
			if sum := h.padded.sum(h.scratch[:], n); sum != nil {
				copy(h.out[1:], sum)
				return Imprint(h.out[:1+sha256.Size]), nil
			}
		}
		sum := sha256.Sum256(h.scratch[:n])
		copy(h.out[1:], sum[:])
		return Imprint(h.out[:1+sha256.Size]), nil
	}
	s, err := h.state(a)
	if err != nil {
		return nil, err
	}
	s.Write(x)
	s.Write(y)
	h.out[0] = tail
	s.Write(h.out[:1])
	h.out[0] = byte(a)
	return Imprint(s.Sum(h.out[:1])), nil
}

// CalendarStep computes one calendar hash step (docs/design/formats.md#calendar-hash-chains): the
// imprint of H(left || right || 0xFF) in the right child's algorithm. It
// is the only implementation of the step: chain verification below and
// the calendar tree (package ksi/calendartree) both use it. The result is
// valid until the next call, which may take it as an input (it reads its
// inputs before writing).
func (h *Hasher) CalendarStep(left, right Imprint) (Imprint, error) {
	return h.step(right.Alg(), left, right, CalendarStepByte)
}

// AggregationStep computes one aggregation step (docs/design/formats.md#aggregation-hash-chains): left
// means the current node is the left child.
func (h *Hasher) AggregationStep(a HashAlg, cur, sibling []byte, left bool, level byte) (Imprint, error) {
	if left {
		return h.step(a, cur, sibling, level)
	}
	return h.step(a, sibling, cur, level)
}

// Hash returns imprint(a, H_a(data)), valid until the next call.
func (h *Hasher) Hash(a HashAlg, data []byte) (Imprint, error) {
	s, err := h.state(a)
	if err != nil {
		return nil, err
	}
	s.Write(data)
	h.out[0] = byte(a)
	return Imprint(s.Sum(h.out[:1])), nil
}

// ChainResult is the output of an aggregation chain: its root hash and
// the level it ends at.
type ChainResult struct {
	Hash  Imprint
	Level uint64
}

// Output computes the chain's output from its input hash, starting at
// level startLevel (the previous chain's output level; 0 for the lowest
// chain). The returned imprint is a fresh copy.
func (c *AggregationChain) Output(h *Hasher, startLevel uint64) (ChainResult, error) {
	return ChainOutput(h, c.Algorithm, c.InputHash, startLevel, c.Links)
}

// ChainOutput runs aggregation links from input at startLevel.
func ChainOutput(h *Hasher, a HashAlg, input Imprint, startLevel uint64, links []Link) (ChainResult, error) {
	cur := input
	lvl := startLevel
	for i := range links {
		l := &links[i]
		if lvl > maxLevel || l.LevelCorrection >= maxLevel-lvl {
			return ChainResult{}, ErrLevelOverflow
		}
		lvl += l.LevelCorrection + 1
		out, err := h.AggregationStep(a, cur, l.StepBytes(), l.Left, byte(lvl))
		if err != nil {
			return ChainResult{}, err
		}
		// out lives in h.out; the next step copies it into its scratch
		// before overwriting h.out.
		cur = out
	}
	return ChainResult{Hash: append(Imprint(nil), cur...), Level: lvl}, nil
}

// Output computes the calendar chain's root (docs/design/formats.md#calendar-hash-chains). Each step
// takes the right child's algorithm: a left link switches to the
// sibling's, a right link keeps the current one.
func (c *CalendarChain) Output(h *Hasher) (Imprint, error) {
	cur := c.InputHash
	for _, l := range c.Links {
		var out Imprint
		var err error
		if l.Left {
			out, err = h.CalendarStep(cur, l.Sibling)
		} else {
			out, err = h.CalendarStep(l.Sibling, cur)
		}
		if err != nil {
			return nil, err
		}
		cur = out
	}
	return append(Imprint(nil), cur...), nil
}

// AggregationTimeFromShape derives the calendar leaf time from the chain
// shape and its publication time (docs/design/formats.md#calendar-hash-chains).
func (c *CalendarChain) AggregationTimeFromShape() (uint64, error) {
	return leafTime(c.PublicationTime, len(c.Links), func(i int) bool { return c.Links[i].Left })
}

// CalendarLeafTime walks a calendar chain's link sides from the root down
// and returns the leaf time it encodes in a calendar of pubTime+1 leaves.
// left[i] is the side of link i, lowest link first.
func CalendarLeafTime(pubTime uint64, left []bool) (uint64, error) {
	return leafTime(pubTime, len(left), func(i int) bool { return left[i] })
}

// leafTime is the walk of CalendarLeafTime over n links whose sides
// left(i) gives, without building a slice of sides.
func leafTime(pubTime uint64, n int, left func(i int) bool) (uint64, error) {
	var t uint64
	r := pubTime
	for i := n - 1; i >= 0; i-- {
		if r == 0 {
			return 0, ErrChainShape
		}
		hb := highBit(r)
		if left(i) {
			r = hb - 1
		} else {
			t += hb
			r -= hb
		}
	}
	if r != 0 {
		return 0, ErrChainShape
	}
	return t, nil
}

// highBit returns the largest power of two ≤ r (r > 0).
func highBit(r uint64) uint64 { return 1 << (63 - bits.LeadingZeros64(r)) }

// Output computes the RFC 3161 record's output: the hash the lowest
// aggregation chain must start from (docs/design/formats.md#rfc-3161-records). inputAlg is the
// algorithm of the lowest chain's input hash.
func (r *RFC3161Record) Output(h *Hasher, inputAlg HashAlg) (Imprint, error) {
	tst, err := h.hash3(r.TSTInfoAlg, r.TSTInfoPrefix, r.InputHash.Digest(), r.TSTInfoSuffix)
	if err != nil {
		return nil, err
	}
	sa, err := h.hash3(r.SigAttrAlg, r.SigAttrPrefix, tst.Digest(), r.SigAttrSuffix)
	if err != nil {
		return nil, err
	}
	out, err := h.Hash(inputAlg, sa)
	if err != nil {
		return nil, err
	}
	return append(Imprint(nil), out...), nil
}

func (h *Hasher) hash3(a HashAlg, x, y, z []byte) (Imprint, error) {
	s, err := h.state(a)
	if err != nil {
		return nil, err
	}
	s.Write(x)
	s.Write(y)
	s.Write(z)
	return Imprint(s.Sum([]byte{byte(a)})), nil
}
