package client

import (
	"crypto/sha256"

	"github.com/tempel-ksi/tempel/ksi"
)

// innerSize is the length of a SHA-256 imprint: a mask, a masked leaf, a
// node of the local tree.
const innerSize = 1 + sha256.Size

// buildLocalTree builds the hash tree of one SignMany request over leaves,
// all at level leafLevel (masked leaves, or document hashes of any
// algorithm without masks), with every node's link to its parent encoded
// once: the per-leaf work of assembling a million signatures is copying,
// not encoding.
func buildLocalTree(leaves []ksi.Imprint, leafLevel byte) (*ksi.Tree, error) {
	in := make([]ksi.TreeLeaf, len(leaves))
	for i, l := range leaves {
		in[i] = ksi.TreeLeaf{Hash: l, Level: leafLevel}
	}
	t, err := ksi.BuildTree(ksi.SHA2_256, in)
	if err != nil {
		return nil, err
	}
	t.PrepareLinks()
	return t, nil
}
