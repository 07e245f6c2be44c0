package verifier

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/tempel-ksi/tempel/ksi"
)

// Policy selects what a signature is verified against.
type Policy int

// The verification policies (docs/design/formats.md#verification-policies).
const (
	Default Policy = iota
	Internal
	KeyBased
	PublicationsFileBased
	UserPublicationBased
	CalendarBased
)

var policyNames = [...]string{
	Default:               "default",
	Internal:              "internal",
	KeyBased:              "key",
	PublicationsFileBased: "publication",
	UserPublicationBased:  "user-publication",
	CalendarBased:         "calendar",
}

func (p Policy) String() string {
	if int(p) < len(policyNames) {
		return policyNames[p]
	}
	return fmt.Sprintf("policy(%d)", int(p))
}

// ParsePolicy parses a policy name as the CLI accepts it.
func ParsePolicy(s string) (Policy, error) {
	switch strings.ToLower(s) {
	case "", "default":
		return Default, nil
	case "internal", "int":
		return Internal, nil
	case "key", "key-based":
		return KeyBased, nil
	case "publication", "pubfile", "publications-file":
		return PublicationsFileBased, nil
	case "user-publication", "userpublication", "pub-str":
		return UserPublicationBased, nil
	case "calendar", "cal":
		return CalendarBased, nil
	}
	return 0, fmt.Errorf("verifier: unknown policy %q (want internal, key, publication, user-publication, calendar or default)", s)
}

// Extender returns calendar hash chains from a calendar (an extending
// service). pubTime 0 asks for the newest calendar root.
type Extender interface {
	Extend(ctx context.Context, aggregationTime, pubTime uint64) (*ksi.CalendarChain, error)
}

// Options are the inputs of a verification besides the signature. Every
// field is optional; a policy that needs a missing one answers NA.
type Options struct {
	// Document is the hash of the signed document. When set, it must match
	// the signature's document hash (GEN-01, GEN-04).
	Document ksi.Imprint
	// InputLevel is the tree level of Document when it is the root of a
	// local aggregation tree (GEN-03).
	InputLevel uint64
	// PublicationsFile is a publications file the caller has verified
	// (VerifyPublicationsFile) or otherwise trusts.
	PublicationsFile *ksi.PublicationsFile
	// UserPublication is a publication the user trusts (from print).
	UserPublication *ksi.PublishedData
	// Extender, when set and ExtendingAllowed, lets publication-based
	// policies extend a signature to a later publication; the calendar
	// policy needs it.
	Extender         Extender
	ExtendingAllowed bool
}

var hasherPool = sync.Pool{New: func() any { return new(ksi.Hasher) }}

// Verify checks sig under policy p. It never panics on a parsed signature
// and never reads the clock or the network except through opts.Extender.
func Verify(ctx context.Context, sig *ksi.Signature, p Policy, opts Options) *Report {
	h := hasherPool.Get().(*ksi.Hasher)
	defer hasherPool.Put(h)
	c := &checker{ctx: ctx, sig: sig, opts: &opts, h: h, rep: &Report{Policy: p, Rules: make([]RuleResult, 0, 12)}}
	switch p {
	case Internal:
		c.internal()
	case KeyBased:
		_ = c.internal() && c.keyBased()
	case PublicationsFileBased:
		_ = c.internal() && c.publicationsFile()
	case UserPublicationBased:
		_ = c.internal() && c.userPublication()
	case CalendarBased:
		_ = c.internal() && c.calendar()
	default:
		if c.internal() && !c.publicationsFile() && c.rep.Result == NA {
			// The file could not decide (no suitable publication, no file):
			// fall back to the calendar authentication record. A hard FAIL
			// against the file is never overridden.
			c.keyBased()
		}
	}
	if c.rep.Result == OK {
		c.rep.Code, c.rep.Rule, c.rep.Message = CodeNone, "", ""
	}
	return c.rep
}

// checker carries one verification: inputs, a hasher and the results so
// far. Each rule method records its result and returns whether to go on.
type checker struct {
	ctx  context.Context
	sig  *ksi.Signature
	opts *Options
	h    *ksi.Hasher
	rep  *Report

	aggrOut ksi.ChainResult // output of the top aggregation chain
	calOut  ksi.Imprint     // output of the calendar chain
}

func (c *checker) ok(rule string) bool {
	c.rep.Rules = append(c.rep.Rules, RuleResult{Rule: rule, Result: OK})
	c.rep.Result = OK
	return true
}

func (c *checker) fail(rule string, code Code, format string, args ...any) bool {
	return c.end(rule, FAIL, code, format, args...)
}

func (c *checker) na(rule string, format string, args ...any) bool {
	return c.end(rule, NA, GEN02, format, args...)
}

func (c *checker) end(rule string, r Result, code Code, format string, args ...any) bool {
	msg := code.Text()
	if format != "" {
		msg += ": " + fmt.Sprintf(format, args...)
	}
	c.rep.Rules = append(c.rep.Rules, RuleResult{Rule: rule, Result: r, Code: code, Message: msg})
	c.rep.Result, c.rep.Code, c.rep.Rule, c.rep.Message = r, code, rule, msg
	return false
}

// calendarAlgsUsable reports whether every hash algorithm of a calendar
// chain (its input and the left siblings, which switch the algorithm) was
// neither deprecated nor obsolete at the chain's publication time.
func calendarAlgsUsable(ch *ksi.CalendarChain) (bool, ksi.HashAlg) {
	t := ch.PublicationTime
	if a := ch.InputHash.Alg(); a.Deprecated(t) {
		return false, a
	}
	for _, l := range ch.Links {
		if l.Left && l.Sibling.Alg().Deprecated(t) {
			return false, l.Sibling.Alg()
		}
	}
	return true, 0
}

// errNoChain is a calendar chain the extender could not give.
var errNoChain = errors.New("verifier: extender returned no calendar chain")

func (c *checker) extend(pubTime uint64) (*ksi.CalendarChain, error) {
	ch, err := c.opts.Extender.Extend(c.ctx, c.sig.SigningTime(), pubTime)
	if err == nil && ch == nil {
		err = errNoChain
	}
	return ch, err
}
