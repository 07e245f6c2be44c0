// Package layout holds the test that keeps imports pointing down
// (docs/design/architecture.md#code-layout); it has no code of its own.
package layout
