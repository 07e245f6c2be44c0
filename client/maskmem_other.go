//go:build !linux

package client

// adviseHugePages is a Linux hint (maskmem_linux.go); elsewhere the
// kernel decides alone.
func adviseHugePages([]byte) {}
