package verifier

import (
	"slices"

	"github.com/tempel-ksi/tempel/ksi"
)

// internal runs the internal policy (docs/design/formats.md#verification-policies, rules in the order of the
// reference implementations). It returns true when every rule passed.
func (c *checker) internal() bool {
	s := c.sig
	chains := s.Chains()
	lowest := chains[0]
	aggrTime := lowest.AggregationTime

	if d := c.opts.Document; d != nil {
		docHash := s.DocumentHash()
		if d.Alg() != docHash.Alg() {
			return c.fail("DocumentHashAlgorithm", GEN04, "document hashed with %s, signature expects %s", d.Alg(), docHash.Alg())
		}
		if !d.Equal(docHash) {
			return c.fail("DocumentHash", GEN01, "document hash %s differs from the signed hash %s", d.Hex(), docHash.Hex())
		}
		c.ok("DocumentHash")
	}
	if !c.inputLevel(lowest) {
		return false
	}
	if a := s.DocumentHash().Alg(); a.Deprecated(aggrTime) {
		return c.fail("DocumentHashAlgorithmTrusted", INT13, "%s was deprecated at %d", a, aggrTime)
	}
	if r := s.RFC3161; r != nil {
		if !r.TSTInfoAlg.Trusted(aggrTime) || !r.SigAttrAlg.Trusted(aggrTime) {
			return c.fail("RFC3161AlgorithmsTrusted", INT14, "TSTInfo %s, signed attributes %s", r.TSTInfoAlg, r.SigAttrAlg)
		}
		if a := lowest.InputHash.Alg(); !a.Trusted(aggrTime) {
			return c.fail("RFC3161OutputAlgorithmTrusted", INT17, "%s", a)
		}
		c.ok("RFC3161Algorithms")
	}
	if !c.chainIndexContinuation(chains) || !c.metadata(chains) {
		return false
	}
	for _, ch := range chains {
		if !ch.Algorithm.Trusted(aggrTime) {
			return c.fail("AggregationAlgorithmTrusted", INT15, "%s", ch.Algorithm)
		}
	}
	c.ok("AggregationAlgorithmTrusted")
	if !c.aggregationChains(chains) {
		return false
	}
	if cal := s.CalendarChain; cal != nil {
		if !c.calendarChain(cal, aggrTime) {
			return false
		}
		if pr := s.PublicationRecord; pr != nil {
			if pr.Data.Time != cal.PublicationTime {
				return c.fail("PublicationRecordTime", INT07, "record %d, calendar chain %d", pr.Data.Time, cal.PublicationTime)
			}
			if !pr.Data.Hash.Equal(c.calOut) {
				return c.fail("PublicationRecordHash", INT09, "")
			}
			c.ok("PublicationRecord")
		} else if ar := s.CalendarAuthRecord; ar != nil {
			if ar.PublishedData.Time != cal.PublicationTime {
				return c.fail("CalendarAuthRecordTime", INT06, "record %d, calendar chain %d", ar.PublishedData.Time, cal.PublicationTime)
			}
			if !ar.PublishedData.Hash.Equal(c.calOut) {
				return c.fail("CalendarAuthRecordHash", INT08, "")
			}
			c.ok("CalendarAuthRecord")
		}
	}
	return true
}

// inputLevel checks GEN-03: a document given at a tree level must not sit
// above the first link, and an RFC 3161 input has level 0.
func (c *checker) inputLevel(lowest *ksi.AggregationChain) bool {
	lvl := c.opts.InputLevel
	if c.sig.RFC3161 != nil && lvl != 0 {
		return c.fail("InputHashLevel", GEN03, "an RFC 3161 signature has input level 0, got %d", lvl)
	}
	if lvl > lowest.Links[0].LevelCorrection {
		return c.fail("InputHashLevel", GEN03, "input level %d exceeds the first level correction %d", lvl, lowest.Links[0].LevelCorrection)
	}
	return true
}

func (c *checker) chainIndexContinuation(chains []*ksi.AggregationChain) bool {
	const rule = "ChainIndexContinuation"
	if r := c.sig.RFC3161; r != nil && !slices.Equal(r.ChainIndex, chains[0].ChainIndex) {
		return c.fail(rule, INT12, "RFC 3161 record chain index differs from the lowest chain's")
	}
	for i := 0; i+1 < len(chains); i++ {
		lo, up := chains[i].ChainIndex, chains[i+1].ChainIndex
		if len(lo) != len(up)+1 || !slices.Equal(lo[:len(up)], up) {
			return c.fail(rule, INT12, "chain %d index %v does not continue %v", i+1, up, lo)
		}
	}
	return c.ok(rule)
}

func (c *checker) metadata(chains []*ksi.AggregationChain) bool {
	for _, ch := range chains {
		for i := range ch.Links {
			if m := ch.Links[i].Metadata; m != nil {
				if err := m.CheckPadding(); err != nil {
					return c.fail("MetadataPadding", INT11, "%v", err)
				}
			}
		}
	}
	return c.ok("MetadataPadding")
}

// aggregationChains computes the chains bottom-up: INT-01 (each input is
// the previous output), INT-02 (one aggregation time), INT-10 (chain index
// equals shape).
func (c *checker) aggregationChains(chains []*ksi.AggregationChain) bool {
	s := c.sig
	if r := s.RFC3161; r != nil {
		out, err := r.Output(c.h, chains[0].InputHash.Alg())
		if err != nil {
			return c.na("RFC3161Output", "%v", err)
		}
		if !out.Equal(chains[0].InputHash) {
			return c.fail("RFC3161Output", INT01, "RFC 3161 output %s, chain input %s", out.Hex(), chains[0].InputHash.Hex())
		}
	}
	var prev ksi.ChainResult
	for i, ch := range chains {
		if i > 0 && !ch.InputHash.Equal(prev.Hash) {
			return c.fail("AggregationChainConsistency", INT01, "chain %d input differs from the output of the chain below", i+1)
		}
		out, err := ch.Output(c.h, prev.Level)
		if err != nil {
			return c.fail("AggregationChainConsistency", INT01, "chain %d: %v", i+1, err)
		}
		prev = out
	}
	c.aggrOut = prev
	c.ok("AggregationChainConsistency")

	t := chains[0].AggregationTime
	if r := s.RFC3161; r != nil && r.AggregationTime != t {
		return c.fail("AggregationTimeConsistency", INT02, "RFC 3161 record time %d, chain time %d", r.AggregationTime, t)
	}
	for i, ch := range chains {
		if ch.AggregationTime != t {
			return c.fail("AggregationTimeConsistency", INT02, "chain %d has time %d, lowest chain %d", i+1, ch.AggregationTime, t)
		}
	}
	c.ok("AggregationTimeConsistency")

	for i, ch := range chains {
		if ch.ChainIndex[len(ch.ChainIndex)-1] != ch.Shape() {
			return c.fail("ChainIndexShape", INT10, "chain %d index %d, links give %d", i+1, ch.ChainIndex[len(ch.ChainIndex)-1], ch.Shape())
		}
	}
	return c.ok("ChainIndexShape")
}

// calendarChain checks INT-03, INT-04, INT-05 and INT-16 and computes the
// calendar root.
func (c *checker) calendarChain(cal *ksi.CalendarChain, aggrTime uint64) bool {
	if !cal.InputHash.Equal(c.aggrOut.Hash) {
		return c.fail("CalendarChainInput", INT03, "calendar input %s, aggregation output %s", cal.InputHash.Hex(), c.aggrOut.Hash.Hex())
	}
	if cal.AggregationTime != aggrTime {
		return c.fail("CalendarChainAggregationTime", INT04, "calendar %d, aggregation chains %d", cal.AggregationTime, aggrTime)
	}
	t, err := cal.AggregationTimeFromShape()
	if err != nil || t != cal.AggregationTime {
		return c.fail("CalendarChainShape", INT05, "shape gives %d, chain says %d", t, cal.AggregationTime)
	}
	for _, l := range cal.Links {
		if l.Left && l.Sibling.Alg().Obsolete(cal.PublicationTime) {
			return c.fail("CalendarChainAlgorithm", INT16, "%s", l.Sibling.Alg())
		}
	}
	out, err := cal.Output(c.h)
	if err != nil {
		return c.na("CalendarChainOutput", "%v", err)
	}
	c.calOut = out
	return c.ok("CalendarChain")
}
