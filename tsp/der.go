package tsp

import (
	"math/big"
	"time"
)

// DER writing by hand for the per-token path: sizes are computed first
// and every structure is written once into one buffer, where a
// cryptobyte.Builder would allocate and move bytes for each nested length.

// derHeaderLen is the size of a DER tag and definite length for n content
// bytes (n < 2^24).
func derHeaderLen(n int) int {
	switch {
	case n < 0x80:
		return 2
	case n < 0x100:
		return 3
	case n < 0x10000:
		return 4
	}
	return 5
}

// derLen is the size of a whole element with n content bytes.
func derLen(n int) int { return derHeaderLen(n) + n }

// Fixed elements.
var (
	derVersion1       = []byte{0x02, 0x01, 0x01}
	derOIDSignedData  = []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02}
	derOIDTSTInfo     = []byte{0x06, 0x0b, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x01, 0x04}
	derOIDKSI         = append([]byte{0x06, byte(len(oidKSIContent))}, oidKSIContent...)
	derSignedDataHead = append([]byte{0x02, 0x01, 0x03, 0x31, byte(len(sha256AlgID))}, sha256AlgID...) // version 3, digestAlgorithms
)

const genTimeLen = len("20060102150405Z")

// appendTSTInfo appends the TSTInfo and returns it with the offset of the
// hashedMessage in it.
func appendTSTInfo(dst, policy, extensions []byte, req *Request, serial *big.Int, genTime time.Time) ([]byte, int) {
	digest := req.Imprint.Digest()
	serialLen := serial.BitLen()/8 + 1 // positive: room for a leading zero bit
	miContent := len(req.HashAlgID) + derLen(len(digest))
	n := len(derVersion1) + len(policy) + derLen(miContent) + derLen(serialLen) + derLen(genTimeLen) + len(accuracy1s)
	if req.Nonce != nil {
		n += derLen(len(req.Nonce))
	}
	n += len(extensions)
	if dst == nil {
		dst = make([]byte, 0, derLen(n))
	}
	start := len(dst)
	dst = appendHeader(dst, 0x30, n)
	dst = append(dst, derVersion1...)
	dst = append(dst, policy...)
	dst = appendHeader(dst, 0x30, miContent)
	dst = append(dst, req.HashAlgID...)
	dst = appendHeader(dst, 0x04, len(digest))
	cut := len(dst) - start
	dst = append(dst, digest...)
	dst = appendHeader(dst, 0x02, serialLen)
	dst = append(dst, make([]byte, serialLen)...)
	serial.FillBytes(dst[len(dst)-serialLen:])
	dst = appendHeader(dst, 0x18, genTimeLen)
	dst = genTime.AppendFormat(dst, "20060102150405Z")
	dst = append(dst, accuracy1s...)
	if req.Nonce != nil {
		dst = appendHeader(dst, 0x02, len(req.Nonce))
		dst = append(dst, req.Nonce...)
	}
	dst = append(dst, extensions...)
	return dst[start:], cut
}
