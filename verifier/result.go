package verifier

import (
	"encoding/json"
	"fmt"
)

// Result is the outcome of a rule or a policy.
type Result int

// Results. NA ("not available") means the data at hand cannot decide.
const (
	OK Result = iota
	FAIL
	NA
)

func (r Result) String() string {
	switch r {
	case OK:
		return "OK"
	case FAIL:
		return "FAIL"
	default:
		return "NA"
	}
}

// MarshalText writes the result as OK, FAIL or NA.
func (r Result) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// Code is a KSI verification error code such as "INT-01".
type Code string

// The KSI verification codes (docs/design/formats.md#result-codes).
const (
	CodeNone Code = ""
	GEN01    Code = "GEN-01"
	GEN02    Code = "GEN-02"
	GEN03    Code = "GEN-03"
	GEN04    Code = "GEN-04"
	INT01    Code = "INT-01"
	INT02    Code = "INT-02"
	INT03    Code = "INT-03"
	INT04    Code = "INT-04"
	INT05    Code = "INT-05"
	INT06    Code = "INT-06"
	INT07    Code = "INT-07"
	INT08    Code = "INT-08"
	INT09    Code = "INT-09"
	INT10    Code = "INT-10"
	INT11    Code = "INT-11"
	INT12    Code = "INT-12"
	INT13    Code = "INT-13"
	INT14    Code = "INT-14"
	INT15    Code = "INT-15"
	INT16    Code = "INT-16"
	INT17    Code = "INT-17"
	PUB01    Code = "PUB-01"
	PUB02    Code = "PUB-02"
	PUB03    Code = "PUB-03"
	PUB04    Code = "PUB-04"
	PUB05    Code = "PUB-05"
	KEY02    Code = "KEY-02"
	KEY03    Code = "KEY-03"
	CAL01    Code = "CAL-01"
	CAL02    Code = "CAL-02"
	CAL03    Code = "CAL-03"
	CAL04    Code = "CAL-04"
)

var codeText = map[Code]string{
	GEN01: "Wrong document",
	GEN02: "Verification inconclusive",
	GEN03: "Input hash level too large",
	GEN04: "Wrong input hash algorithm",
	INT01: "Inconsistent aggregation hash chains",
	INT02: "Inconsistent aggregation hash chain aggregation times",
	INT03: "Calendar hash chain input hash mismatch",
	INT04: "Calendar hash chain aggregation time mismatch",
	INT05: "Calendar hash chain shape inconsistent with aggregation time",
	INT06: "Calendar hash chain time inconsistent with calendar authentication record time",
	INT07: "Calendar hash chain time inconsistent with publication time",
	INT08: "Calendar hash chain root hash is inconsistent with calendar authentication record input hash",
	INT09: "Calendar hash chain root hash is inconsistent with published hash value",
	INT10: "Aggregation hash chain chain index mismatch",
	INT11: "The metadata record in the aggregation hash chain may not be trusted",
	INT12: "Inconsistent chain indexes",
	INT13: "Document hash algorithm deprecated at the time of signing",
	INT14: "RFC3161 compatibility record composed of hash algorithms that where deprecated at the time of signing",
	INT15: "Aggregation hash chain uses hash algorithm that was deprecated at the time of signing",
	INT16: "Calendar hash chain hash algorithm was obsolete at publication time",
	INT17: "The RFC3161 compatibility record output hash algorithm was deprecated at the time of signing",
	PUB01: "Extender response calendar root hash mismatch",
	PUB02: "Extender response inconsistent",
	PUB03: "Extender response input hash mismatch",
	PUB04: "Publication record hash and user provided publication hash mismatch",
	PUB05: "Publication record hash and publications file publication hash mismatch",
	KEY02: "PKI signature not verified with certificate",
	KEY03: "Signing certificate not valid at aggregation time",
	CAL01: "Calendar root hash mismatch between signature and calendar database chain",
	CAL02: "Aggregation hash chain root hash and calendar database hash chain input hash mismatch",
	CAL03: "Aggregation time mismatch",
	CAL04: "Calendar hash chain right links are inconsistent",
}

// Text returns the reference implementations' short description of c.
func (c Code) Text() string { return codeText[c] }

// RuleResult is the outcome of one verification rule.
type RuleResult struct {
	Rule    string `json:"rule"`
	Result  Result `json:"result"`
	Code    Code   `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

func (r RuleResult) String() string {
	if r.Code == CodeNone {
		return fmt.Sprintf("%s: %s", r.Rule, r.Result)
	}
	return fmt.Sprintf("%s: %s %s: %s", r.Rule, r.Result, r.Code, r.Message)
}

// Report is the outcome of a policy: the final result, the deciding rule
// and every rule that ran, in order.
type Report struct {
	Policy  Policy       `json:"policy"`
	Result  Result       `json:"result"`
	Code    Code         `json:"code,omitempty"`
	Rule    string       `json:"rule,omitempty"`
	Message string       `json:"message,omitempty"`
	Rules   []RuleResult `json:"rules"`
	// Anchor names what the signature was finally checked against:
	// "calendar authentication record", "publications file", ….
	Anchor string `json:"anchor,omitempty"`
}

// Err returns nil for OK and an error describing the failure otherwise.
func (r *Report) Err() error {
	if r.Result == OK {
		return nil
	}
	return &Error{Result: r.Result, Code: r.Code, Rule: r.Rule, Message: r.Message}
}

// Error is a verification that did not end OK.
type Error struct {
	Result  Result
	Code    Code
	Rule    string
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("verifier: %s %s (%s): %s", e.Result, e.Code, e.Rule, e.Message)
}

// MarshalJSON writes the policy by name.
func (p Policy) MarshalJSON() ([]byte, error) { return json.Marshal(p.String()) }
