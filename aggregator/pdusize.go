package aggregator

import (
	"math/bits"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/pdu"
	"github.com/tempel-ksi/tempel/ksi/tlv"
)

// How many aggregation requests one KSI PDU may carry.
//
// A response PDU is one TLV16 element (pdu.MaxSize), and each answer in it
// carries a whole signature. A PDU whose answer would not fit must be
// refused before any of its hashes is signed, so the limit rests on an
// upper bound of one signature's size, fixed before the round: the
// request's own aggregation chain (known from the engine's configuration
// and the login) and upstream's elements, the same for every request of a
// round, bounded from above by what a Tempel hierarchy can produce.
//
// A signature is: the request's chain (metadata link, then its path in
// the round tree), one aggregation chain per upstream level (a parent
// aggregator's round, the calendar's top tree of the second), the
// calendar chain of the second and the calendar authentication record.
// The assumptions behind the upstream part (upstreamBound):
const (
	// upstreamTreeDepth: every upstream tree has at most 2^20 leaves: a
	// parent aggregator's round (--max-queue, default 1,000,000 < 2^20)
	// or the calendar's top tree (MaxPerSecond, 100,000 < 2^17).
	upstreamTreeDepth = 20
	// upstreamNameLen: the client id a node signs with upstream (--name
	// or --upstream-login) and its machine id are at most 64 bytes (the
	// gRPC machine id header is capped at 64).
	upstreamNameLen = 64
	// freshCalendarLinks: a fresh signature's calendar chain runs from
	// leaf t to the root of the tree over seconds 0..t; the tree over N
	// leaves is the perfect subtrees of N's binary digits, and leaf t sits
	// in the smallest, so the chain has (height of that subtree) + (number
	// of larger subtrees) <= bits.Len(N)-1 links: at most 32 for any
	// second before 2^32 (the year 2106).
	freshCalendarLinks = 32
	// maxRSABits: the calendar signs its roots with RSA keys of at most
	// 8192 bits (Tempel's development PKI uses 2048; 4096 is the usual
	// "large" key).
	maxRSABits = 8192
	// maxSigTypeLen, maxCertIDLen: the signature type is an OID in dotted
	// text (Tempel writes "1.2.840.113549.1.1.11", 21 bytes) and the
	// certificate id a short hash prefix (Tempel: 4 bytes). No
	// certificate repository URI is written.
	maxSigTypeLen = 64
	maxCertIDLen  = 32
	// remoteUpstreamChains: a remote parent is at most two aggregator
	// levels below the calendar: the parent's round chain, perhaps a
	// grandparent's, and the calendar's top tree. An in-process calendar
	// (role all) adds only its top tree.
	remoteUpstreamChains = 3
)

// Sizes of the pieces, each the most its encoder writes.
const (
	imprintLen = 1 + 32 // SHA-256, the only algorithm Tempel aggregates with
	// docImprintLen is a request's own hash, the input of its chain: any
	// accepted algorithm, SHA-512 and SHA3-512 the longest.
	docImprintLen = 1 + 64
	uintElem      = 2 + 8 // an integer element of any value
	// linkMax is a sibling link: its header, a level correction of at
	// most 255 and a sibling imprint.
	linkMax = 2 + 3 + 2 + imprintLen
	// calendarLinkMax is a calendar chain link: an imprint in a TLV8.
	calendarLinkMax = 2 + imprintLen
)

// metadataValueMax is the most a metadata value takes with a client id
// of clientID bytes, a machine id of machineID bytes (0: none), a
// sequence number (if seq) and a request time.
func metadataValueMax(clientID, machineID int, seq bool) int {
	n := 4 + tlv.HeaderSize(0x01, clientID+1) + clientID + 1 // padding, client id
	if machineID > 0 {
		n += tlv.HeaderSize(0x02, machineID+1) + machineID + 1
	}
	if seq {
		n += uintElem
	}
	return n + uintElem
}

// aggregationChainMax is the most an aggregation chain (0x801) takes with
// indexEntries chain index entries, an input hash of at most input bytes,
// a metadata link with a value of at most meta bytes, and links sibling
// links. Siblings are round nodes, SHA-256: every leaf of a round is the
// hash of a request with its metadata.
func aggregationChainMax(indexEntries, input, meta, links int) int {
	metaElem := tlv.HeaderSize(0x04, meta) + meta
	metaLink := tlv.HeaderSize(0x07, 3+metaElem) + 3 + metaElem
	n := uintElem + indexEntries*uintElem + 2 + input + 3 + metaLink + links*linkMax
	return tlv.HeaderSize(ksi.TypeAggregationChain, n) + n
}

// calendarChainMax is the most a calendar chain (0x802) takes with links
// links.
func calendarChainMax(links int) int {
	n := 2*uintElem + 2 + imprintLen + links*calendarLinkMax
	return tlv.HeaderSize(ksi.TypeCalendarChain, n) + n
}

// authRecordMax is the most a calendar authentication record takes.
func authRecordMax() int {
	pubData := 2 + uintElem + 2 + imprintLen
	sigData := 4 + (2 + maxSigTypeLen + 1) + (4 + maxRSABits/8) + (2 + maxCertIDLen)
	return 4 + pubData + sigData
}

// upstreamBound is the most upstream's elements take in a signature:
// chains aggregation chains (the lowest with chains chain index entries,
// the calendar's top tree with one), a fresh calendar chain and an
// authentication record.
func upstreamBound(chains int) int {
	meta := metadataValueMax(upstreamNameLen, upstreamNameLen, true)
	n := calendarChainMax(freshCalendarLinks) + authRecordMax()
	for i := 1; i <= chains; i++ {
		n += aggregationChainMax(i, imprintLen, meta, upstreamTreeDepth)
	}
	return n
}

// roundDepth is the longest path in a round of at most maxQueue requests:
// the tree pairs neighbours level by level (ksi.BuildTree).
func roundDepth(maxQueue int) int {
	if maxQueue <= 1 {
		return 0
	}
	return bits.Len(uint(maxQueue - 1))
}

// upstreamChains is how many aggregation chains upstream adds: the
// in-process calendar (a SlotUpstream) only its top tree, a remote
// parent at most remoteUpstreamChains.
func (e *Engine) upstreamChains() int { return upstreamChainsOf(e.cfg.Upstream) }

func upstreamChainsOf(up Upstream) int {
	if _, local := up.(SlotUpstream); local {
		return 1
	}
	return remoteUpstreamChains
}

// MaxLevelLimit is the highest request level an engine with a queue of
// maxQueue requests and upstream up can accept: a chain climbs at most
// 255 levels (docs/design/formats.md#level-corrections), and above a request sit its metadata link,
// its round's tree and, per upstream chain, a metadata link and a tree of
// at most 2^upstreamTreeDepth leaves. A request that overflowed would
// fail its whole round.
func MaxLevelLimit(maxQueue int, up Upstream) int {
	return 255 - (1 + roundDepth(maxQueue)) - upstreamChainsOf(up)*(1+upstreamTreeDepth)
}

// signatureBound is the most bytes the signature elements (the children
// of 0x800) of a PDU request by login take.
func (e *Engine) signatureBound(login string) int {
	up := e.upstreamChains()
	own := aggregationChainMax(up+1, docImprintLen, metadataValueMax(len(login), 0, true), roundDepth(e.cfg.MaxQueue))
	return own + upstreamBound(up)
}

// responseBound is the most one aggregation response to login takes,
// signed or refused (error messages are cut by pdu.TruncateMessage).
func (e *Engine) responseBound(login string) int {
	return pdu.MaxAggregationResponseLen(max(e.signatureBound(login), pdu.MaxErrorMessageLen+4))
}
