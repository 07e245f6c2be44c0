package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/round"
	"github.com/tempel-ksi/tempel/verifier"
)

// sigChecker checks the signatures SignMany assembled for one request,
// from their bytes: each one's lowest chain, read from the signature
// itself, must lead from its document hash to the request's root at the
// root's level, and everything above that chain must be the server's
// verified signature of the root.
//
// Recomputing a million chains of twenty links would cost twenty million
// hashes, but neighbours share most of their path. A step's result
// depends only on the hash and level before it and on the link's bytes,
// so once a chain has been recomputed to the root, each of its states
// (hash and level after a link, with the bytes of the links still to
// come) is known to lead to the root. The next chain is recomputed until
// it reaches a known state with the same remaining bytes; comparing bytes
// replaces hashing them. And when a chain's step joins the same two nodes
// as a remembered step, from the other side, its result is that step's.
// A chain then costs about two hashes: its mask step and one inner node.
type sigChecker struct {
	ans       *round.Answer
	root      ksi.Imprint
	rootLevel byte

	// known[l] is the last checked state at level l.
	known [256]knownState
	// The states of the chain being checked, by step.
	steps [64]knownState
	h     ksi.Hasher
	// Reused for reading each signature's head and links in place; index
	// holds the head's chain index while it is short, as a server's is.
	head  ksi.ChainHead
	link  ksi.Link
	index [4]uint64
}

type knownState struct {
	ok    bool
	level byte
	hash  [innerSize]byte
	rest  []byte // the links after this state, in a checked signature
	upper uint64 // the shape of rest, with its leading 1

	// The step that made hash, when its input was a SHA-256 state: a
	// right neighbour's step joins the same two nodes from the other
	// side, and its result is then known without hashing.
	hasIn bool
	in    [innerSize]byte // the state before the step
	sib   []byte          // the link's sibling, in a checked signature
	left  bool            // the state was the left child
}

func newSigChecker(ans *round.Answer, root ksi.Imprint, rootLevel byte) *sigChecker {
	c := &sigChecker{ans: ans, root: root, rootLevel: rootLevel}
	c.head.ChainIndex = c.index[:0]
	return c
}

var errLeafFormat = errors.New("malformed signature")

// check checks sig, the signature of doc.
func (c *sigChecker) check(sig []byte, doc ksi.Imprint) error {
	h := &c.head
	links, rest, err := ksi.ReadSignatureHead(sig, h)
	if err != nil {
		return fmt.Errorf("%w: %v", errLeafFormat, err)
	}
	if !bytes.Equal(rest, c.ans.Elements) {
		return errors.New("the parts above the local chain are not the server's verified signature")
	}
	if h.AggregationTime != c.ans.AggregationTime {
		return fmt.Errorf("aggregation time %d, the server's is %d", h.AggregationTime, c.ans.AggregationTime)
	}
	if len(h.ChainIndex) != len(c.ans.ChainIndex) {
		return fmt.Errorf("chain index of %d entries above the local chain, the server's has %d", len(h.ChainIndex), len(c.ans.ChainIndex))
	}
	for k, want := range c.ans.ChainIndex {
		if x := h.ChainIndex[k]; x != want {
			return fmt.Errorf("chain index entry %d is %d, the server's is %d", k, x, want)
		}
	}
	if !bytes.Equal(h.Input, doc) {
		return errors.New("input hash is not the document hash")
	}
	if h.Algorithm != ksi.SHA2_256 {
		return fmt.Errorf("aggregation algorithm %s, want SHA-256", h.Algorithm)
	}
	return c.links(links, doc, h.Shape)
}

// links recomputes the chain links from doc and checks its shape.
func (c *sigChecker) links(links []byte, doc ksi.Imprint, shape uint64) error {
	cur := []byte(doc)
	var lvl int
	var lower uint64 // the side bits of the links done, lowest first
	k := 0
	known := false
	for len(links) > 0 {
		if k == len(c.steps) {
			return fmt.Errorf("%w: chain longer than 63 links", errLeafFormat)
		}
		rest, err := ksi.CutSiblingLink(links, &c.link)
		if err != nil {
			return fmt.Errorf("%w: link %d: %v", errLeafFormat, k, err)
		}
		corr, sib, left := c.link.LevelCorrection, c.link.Sibling, c.link.Left
		if corr > 0xFF || lvl+int(corr)+1 > 0xFF {
			return fmt.Errorf("link %d: level above 255", k)
		}
		lvl += int(corr) + 1
		if left {
			lower |= 1 << k
		}
		s := &c.steps[k]
		s.hasIn = k > 0 && len(sib) == innerSize
		if s.hasIn {
			copy(s.in[:], cur)
		}
		if w := &c.known[lvl]; s.hasIn && w.ok && w.hasIn && w.left != left && bytes.Equal(w.sib, cur) && w.in == [innerSize]byte(sib) {
			// The same two nodes at the same level, sides swapped: the
			// same hash input, so the same result.
			s.hash = w.hash
		} else {
			out, err := c.h.AggregationStep(ksi.SHA2_256, cur, sib, left, byte(lvl))
			if err != nil {
				return err
			}
			copy(s.hash[:], out)
		}
		s.level, s.rest, s.sib, s.left = byte(lvl), rest, sib, left
		cur = s.hash[:]
		links = rest
		k++
		if w := &c.known[lvl]; w.ok && w.hash == s.hash && bytes.Equal(w.rest, rest) {
			known = true
			lower |= w.upper << k
			break
		}
	}
	if k == 0 {
		return fmt.Errorf("%w: no links", errLeafFormat)
	}
	if !known {
		if lvl != int(c.rootLevel) || !bytes.Equal(cur, c.root) {
			return errors.New("the chain does not lead to the signed root")
		}
		lower |= 1 << k
	}
	if lower != shape {
		return fmt.Errorf("chain index %d does not match the links' shape %d", shape, lower)
	}
	for j := range k {
		s := &c.steps[j]
		s.ok, s.upper = true, shape>>(j+1)
		c.known[s.level] = *s
	}
	return nil
}

// verifyLeaf runs the full internal policy on one assembled signature.
func verifyLeaf(ctx context.Context, b []byte, doc ksi.Imprint) error {
	sig, err := ksi.ParseSignature(b)
	if err != nil {
		return err
	}
	rep := verifier.Verify(ctx, sig, verifier.Internal, verifier.Options{Document: doc})
	if rep.Result != verifier.OK {
		return fmt.Errorf("signature fails %s (%s): %s", rep.Rule, rep.Code, rep.Message)
	}
	return nil
}
