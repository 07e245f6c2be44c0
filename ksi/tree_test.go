package ksi

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"testing"
)

func randomLeaves(r *rand.Rand, n int, maxLevel int) []TreeLeaf {
	leaves := make([]TreeLeaf, n)
	for i := range leaves {
		var d [32]byte
		for j := range d {
			d[j] = byte(r.Uint32())
		}
		leaves[i] = TreeLeaf{Hash: append(Imprint{byte(SHA2_256)}, d[:]...), Level: byte(r.IntN(maxLevel + 1))}
	}
	return leaves
}

// TestTreePathsReachRoot checks that every leaf's path, run as an
// aggregation chain from the leaf's level, gives the root and its level.
func TestTreePathsReachRoot(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var h Hasher
	for n := 1; n <= 70; n++ {
		leaves := randomLeaves(r, n, 4)
		tree, err := BuildTree(SHA2_256, leaves)
		if err != nil {
			t.Fatal(err)
		}
		root, rootLevel := tree.Root()
		for i, l := range leaves {
			path := tree.Path(i)
			out, err := ChainOutput(&h, SHA2_256, l.Hash, uint64(l.Level), path)
			if err != nil {
				t.Fatalf("n=%d leaf %d: %v", n, i, err)
			}
			if len(path) == 0 {
				out = ChainResult{Hash: l.Hash, Level: uint64(l.Level)}
			}
			if !out.Hash.Equal(root) || out.Level != uint64(rootLevel) {
				t.Fatalf("n=%d leaf %d: path gives %s level %d, root %s level %d", n, i, out.Hash, out.Level, root, rootLevel)
			}
		}
	}
}

func TestTreeTwoLeavesByHand(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	leaves := randomLeaves(r, 2, 0)
	leaves[1].Level = 3
	tree, err := BuildTree(SHA2_256, leaves)
	if err != nil {
		t.Fatal(err)
	}
	root, lvl := tree.Root()
	want := sha256.Sum256(append(append(append([]byte{}, leaves[0].Hash...), leaves[1].Hash...), 4))
	if lvl != 4 || !root.Equal(append(Imprint{1}, want[:]...)) {
		t.Fatalf("root %s level %d, want %x level 4", root, lvl, want)
	}
	p := tree.Path(0)
	if len(p) != 1 || !p[0].Left || p[0].LevelCorrection != 3 {
		t.Fatalf("leaf 0 path %+v: want one left link with level correction 3", p)
	}
}

func TestTreeRejectsBadInput(t *testing.T) {
	if _, err := BuildTree(SHA2_256, nil); err == nil {
		t.Error("empty tree built")
	}
	if _, err := BuildTree(SHA2_256, []TreeLeaf{{Hash: Imprint{byte(SHA1), 1, 2}}}); err == nil {
		t.Error("tree built over a malformed leaf")
	}
	zero := append(Imprint{byte(SHA2_256)}, make([]byte, 32)...)
	if _, err := BuildTree(SHA2_256, []TreeLeaf{{Hash: zero, Level: 255}, {Hash: zero}}); !errors.Is(err, ErrLevelOverflow) {
		t.Errorf("tree above level 255: %v", err)
	}
	for name, h := range map[string]Imprint{"unknown algorithm": append(Imprint{0x0C}, make([]byte, 32)...),
		"SHA-1 of 32 bytes": make(Imprint, 33), "empty": nil} {
		_, err := BuildTree(SHA2_256, []TreeLeaf{{Hash: zero}, {Hash: h}})
		if !errors.Is(err, ErrTreeInput) || !errors.Is(err, ErrBadImprint) {
			t.Errorf("%s leaf: %v", name, err)
		}
	}
}

// Leaves of other algorithms (document hashes without metadata) are
// leaves like any other: every path, hashed with SHA-256 above the
// leaves, reaches the root, and the prepared link bytes are the paths'.
func TestTreeMixedAlgorithms(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	algs := []HashAlg{SHA2_512, SHA2_256, RIPEMD160, SHA3_384, SHA2_256, SHA3_224, SHA1, SHA3_512, SM3}
	var h Hasher
	for n := 1; n <= 40; n++ {
		leaves := make([]TreeLeaf, n)
		for i := range leaves {
			a := algs[(i+n)%len(algs)]
			d := make([]byte, a.Size())
			for j := range d {
				d[j] = byte(r.Uint32())
			}
			leaves[i] = TreeLeaf{Hash: append(Imprint{byte(a)}, d...), Level: byte(r.IntN(3))}
		}
		tree, err := BuildTree(SHA2_256, leaves)
		if err != nil {
			t.Fatal(err)
		}
		tree.PrepareLinks()
		root, rootLevel := tree.Root()
		if n > 1 && root.Alg() != SHA2_256 {
			t.Fatalf("n=%d: root %s is not SHA-256", n, root)
		}
		for i, l := range leaves {
			path := tree.Path(i)
			out := ChainResult{Hash: l.Hash, Level: uint64(l.Level)}
			if len(path) > 0 {
				if out, err = ChainOutput(&h, SHA2_256, l.Hash, uint64(l.Level), path); err != nil {
					t.Fatal(err)
				}
			}
			if !out.Hash.Equal(root) || out.Level != uint64(rootLevel) {
				t.Fatalf("n=%d leaf %d (%s): path gives %s level %d, root %s level %d", n, i, l.Hash.Alg(), out.Hash, out.Level, root, rootLevel)
			}
			var want []byte
			for j := range path {
				want = AppendLinkBytes(want, &path[j])
			}
			if got := tree.AppendPathBytes(nil, i); !bytes.Equal(got, want) {
				t.Fatalf("n=%d leaf %d: prepared links differ from the path", n, i)
			}
		}
	}
}

func BenchmarkBuildTree100k(b *testing.B) {
	leaves := randomLeaves(rand.New(rand.NewPCG(5, 6)), 100_000, 0)
	for i := range leaves {
		leaves[i].Hash[0] = byte(SHA2_256)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := BuildTree(SHA2_256, leaves); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100_000, "ns/leaf")
}

// PathLen is the length of what AppendPathBytes appends, for every leaf
// of trees of several sizes and leaf levels.
func TestTreePathLen(t *testing.T) {
	for _, n := range []int{1, 2, 3, 7, 100} {
		leaves := make([]TreeLeaf, n)
		for i := range leaves {
			d := sha256.Sum256([]byte{byte(i), byte(n)})
			leaves[i] = TreeLeaf{Hash: append(Imprint{byte(SHA2_256)}, d[:]...), Level: byte(i % 3)}
		}
		tr, err := BuildTree(SHA2_256, leaves)
		if err != nil {
			t.Fatal(err)
		}
		tr.PrepareLinks()
		for i := range n {
			if got, want := tr.PathLen(i), len(tr.AppendPathBytes(nil, i)); got != want {
				t.Fatalf("%d leaves, leaf %d: PathLen %d, AppendPathBytes %d bytes", n, i, got, want)
			}
		}
	}
}
