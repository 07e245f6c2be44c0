package client

import (
	"syscall"
	"unsafe"
)

// hugePage is the size of a transparent huge page on Linux.
const hugePage = 2 << 20

// adviseHugePages asks the kernel to back the 2 MiB-aligned part of b with
// huge pages. A million signatures are about 2 GB written into fresh
// memory; with 4 KiB pages, faulting that memory in costs more than
// writing it. Where transparent huge pages are off, or b is already
// backed, nothing changes; failure only costs speed, so it is ignored.
func adviseHugePages(b []byte) {
	if len(b) < 2*hugePage {
		return
	}
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	start := (p + hugePage - 1) &^ (hugePage - 1)
	end := (p + uintptr(len(b))) &^ (hugePage - 1)
	if end <= start {
		return
	}
	_ = syscall.Madvise(b[start-p:end-p], syscall.MADV_HUGEPAGE)
}
