// Package layout holds the test that keeps imports pointing down
// (DESIGN.md §7); it has no code of its own.
package layout
