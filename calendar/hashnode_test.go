package calendar

import (
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/calendartree"
)

// hashNode is the calendar step on two nodes, for tests that build
// reference trees; it panics on error (a test bug: nodes are SHA-256).
func hashNode(left, right ksi.Imprint) ksi.Imprint {
	h, err := calendartree.NodeHash(left, right)
	if err != nil {
		panic(err)
	}
	return h
}
