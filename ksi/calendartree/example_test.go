package calendartree_test

import (
	"crypto/sha256"
	"fmt"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/calendartree"
)

// mapStore keeps nodes in a map: the caller's storage.
type mapStore map[calendartree.NodeID]ksi.Imprint

func (m mapStore) ReadNodes(ids []calendartree.NodeID, hashes []ksi.Imprint) error {
	for i, id := range ids {
		h, ok := m[id]
		if !ok {
			return fmt.Errorf("node %v missing", id)
		}
		hashes[i] = h
	}
	return nil
}

// The caller applies the step, stores the nodes it returns, and only then
// uses the new state; chains read what was stored.
func ExampleAppend() {
	store := mapStore{}
	var st calendartree.State
	for t := uint64(1000); t < 1005; t++ {
		sum := sha256.Sum256(fmt.Appendf(nil, "round root of second %d", t))
		leaf := append(ksi.Imprint{byte(ksi.SHA2_256)}, sum[:]...)
		next, nodes, err := calendartree.Append(st, t, []ksi.Imprint{leaf})
		if err != nil {
			panic(err)
		}
		for _, n := range nodes {
			store[n.ID] = n.Hash
		}
		st = next
		fmt.Printf("second %d: %d nodes to store\n", t, len(nodes))
	}
	chain, err := st.Chain(store, 1001, 1004)
	if err != nil {
		panic(err)
	}
	var h ksi.Hasher
	root, err := chain.Output(&h)
	fmt.Println(len(chain.Links), "links; verifies to the root at 1004:", err == nil && root.Equal(st.Root()))
	// Output:
	// second 1000: 1 nodes to store
	// second 1001: 2 nodes to store
	// second 1002: 1 nodes to store
	// second 1003: 3 nodes to store
	// second 1004: 1 nodes to store
	// 9 links; verifies to the root at 1004: true
}
