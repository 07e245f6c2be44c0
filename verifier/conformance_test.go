package verifier_test

import (
	"bufio"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/internal/testpack"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/pdu"
	"github.com/tempel-ksi/tempel/ksi/tlv"
	"github.com/tempel-ksi/tempel/verifier"
)

// packCSVs are the conformance pack's result tables, relative to test_pack.
var packCSVs = []string{
	"valid-signatures/signature-results.csv",
	"invalid-signatures/invalid-signature-results.csv",
	"policy-verification-signatures/policy-verification-results.csv",
	"internal-policy-signatures/internal-policy-results.csv",
}

// packRow is one CSV row (columns described in MANIFEST.md §2).
type packRow struct {
	csv, line                       string
	sig, policy, code               string
	inputLevel                      uint64
	docHash, calInput, calOutput    string
	aggrTime, pubTime               string
	pubString                       string
	extendingPermitted              bool
	responseFile, pubFile, certFile string
	dir                             string
}

func readPack(t *testing.T, dir string) []packRow {
	var rows []packRow
	for _, name := range packCSVs {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("conformance pack: %v", err)
		}
		sc := bufio.NewScanner(f)
		n := 0
		for sc.Scan() {
			n++
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			c := strings.Split(line, ";")
			for len(c) < 15 {
				c = append(c, "")
			}
			lvl, _ := strconv.ParseUint(c[4], 10, 64)
			rows = append(rows, packRow{
				csv: name, line: strconv.Itoa(n), dir: filepath.Join(dir, filepath.Dir(name)),
				sig: c[0], policy: c[1], code: c[2], inputLevel: lvl,
				docHash: c[5], calInput: c[6], calOutput: c[7], aggrTime: c[8], pubTime: c[9],
				pubString: c[10], extendingPermitted: c[11] == "true",
				responseFile: c[12], pubFile: c[13], certFile: c[14],
			})
		}
		f.Close()
	}
	return rows
}

// errLive marks a verification that needed a live extender whose answer
// the pack does not record.
var errLive = errors.New("needs a live extender (no recorded response)")

type liveExtender struct{ asked bool }

func (l *liveExtender) Extend(context.Context, uint64, uint64) (*ksi.CalendarChain, error) {
	l.asked = true
	return nil, errLive
}

// recordedExtender answers with the calendar chain of a recorded extender
// response PDU (request id 1).
type recordedExtender struct{ pdu []byte }

func (r recordedExtender) Extend(context.Context, uint64, uint64) (*ksi.CalendarChain, error) {
	return calendarChainFromResponse(r.pdu)
}

// calendarChainFromResponse reads the recorded extender response PDU
// (HMAC key "anon", as in the reference test suites) and returns its chain.
func calendarChainFromResponse(b []byte) (*ksi.CalendarChain, error) {
	resp, err := pdu.ParseExtenderResponse(b)
	if err != nil {
		return nil, err
	}
	if err := resp.Verify([]byte("anon")); err != nil {
		return nil, err
	}
	for _, r := range resp.Responses {
		if r.Status != 0 {
			return nil, fmt.Errorf("extender status %#x: %s", r.Status, r.ErrorMessage)
		}
		if r.CalendarChain != nil {
			e, err := tlv.ReadOne(r.CalendarChain)
			if err != nil {
				return nil, err
			}
			return ksi.ParseCalendarChain(e)
		}
	}
	return nil, errors.New("recorded response has no calendar chain")
}

type outcome int

const (
	passed outcome = iota
	failed
	skipped
)

// TestConformance runs every row of the reference conformance pack.
func TestConformance(t *testing.T) {
	dir := testpack.PackDir(t)
	rows := readPack(t, dir)
	livePubFile, err := ksi.ParsePublicationsFile(readFile(t, filepath.Join(dir, "policy-verification-signatures", "resources", "publications-file.bin")))
	if err != nil {
		t.Fatalf("live publications file fixture: %v", err)
	}
	var counts [3]int
	var skips []string
	for _, r := range rows {
		name := fmt.Sprintf("%s:%s/%s", filepath.Base(r.csv), r.line, r.sig)
		var res outcome
		var why string
		t.Run(name, func(t *testing.T) {
			res, why = runRow(t, r, livePubFile)
			switch res {
			case failed:
				t.Errorf("%s", why)
			case skipped:
				t.Logf("skipped: %s", why)
			}
		})
		counts[res]++
		if res == skipped {
			skips = append(skips, fmt.Sprintf("  %s: %s", name, why))
		}
	}
	fmt.Printf("conformance: %d passed, %d failed, %d skipped\n", counts[passed], counts[failed], counts[skipped])
	for _, s := range skips {
		fmt.Println(s)
	}
	if total := counts[passed] + counts[failed] + counts[skipped]; total != 413 {
		t.Errorf("pack has %d rows, want 413", total)
	}
	if counts[passed] < 380 {
		t.Errorf("only %d rows agree, want at least 380", counts[passed])
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func runRow(t *testing.T, r packRow, livePubFile *ksi.PublicationsFile) (outcome, string) {
	if r.policy == "not-implemented" {
		return skipped, "the pack marks this case not implemented"
	}
	data, err := os.ReadFile(filepath.Join(r.dir, r.sig))
	if err != nil {
		return failed, err.Error()
	}
	sig, err := ksi.ParseSignature(data)
	if r.policy == "parsing" {
		if err == nil {
			return failed, "parsed, but the pack expects a parse failure"
		}
		if !errors.Is(err, ksi.ErrFormat) {
			return failed, fmt.Sprintf("parse error %v does not wrap ksi.ErrFormat", err)
		}
		return passed, ""
	}
	if err != nil {
		return failed, fmt.Sprintf("parse: %v", err)
	}
	if msg := checkRowValues(sig, r); msg != "" {
		return failed, msg
	}

	opts := verifier.Options{InputLevel: r.inputLevel, ExtendingAllowed: r.extendingPermitted}
	if r.docHash != "" {
		if opts.Document, err = ksi.ParseImprintText(r.docHash); err != nil {
			return failed, fmt.Sprintf("document hash column: %v", err)
		}
	}
	live := &liveExtender{}
	opts.Extender = live
	if r.responseFile != "" {
		opts.Extender = recordedExtender{readFile(t, filepath.Join(r.dir, r.responseFile))}
	}
	var policy verifier.Policy
	switch r.policy {
	case "internal":
		policy = verifier.Internal
	case "key":
		policy = verifier.KeyBased
	case "calendar":
		policy = verifier.CalendarBased
	case "userPublication":
		policy = verifier.UserPublicationBased
		if r.pubString == "" {
			return failed, "user publication row without a publication string"
		}
		pd, err := ksi.ParsePublicationString(r.pubString)
		if err != nil {
			return failed, fmt.Sprintf("publication string column: %v", err)
		}
		opts.UserPublication = &pd
	case "publicationsFile":
		policy = verifier.PublicationsFileBased
	default:
		return failed, fmt.Sprintf("unknown policy column %q", r.policy)
	}
	if policy == verifier.KeyBased || policy == verifier.PublicationsFileBased {
		if r.pubFile == "" {
			// "live" rows: the pack's publications file as a trusted fixture.
			opts.PublicationsFile = livePubFile
		} else {
			pf, err := loadTrustedPubFile(r)
			if err != nil {
				return failed, err.Error()
			}
			opts.PublicationsFile = pf
		}
	}
	rep := verifier.Verify(context.Background(), sig, policy, opts)
	if live.asked && rep.Result == verifier.NA && strings.Contains(rep.Message, errLive.Error()) {
		return skipped, fmt.Sprintf("%s policy needs a live extender; the pack records no answer", r.policy)
	}
	want := r.code
	if want == "" {
		if rep.Result != verifier.OK {
			return failed, fmt.Sprintf("want OK, got %s %s (%s): %s", rep.Result, rep.Code, rep.Rule, rep.Message)
		}
		return passed, ""
	}
	if string(rep.Code) != want {
		return failed, fmt.Sprintf("want %s, got %s %s (%s): %s", want, rep.Result, rep.Code, rep.Rule, rep.Message)
	}
	return passed, ""
}

// loadTrustedPubFile reads a row's publications file and verifies its
// PKCS#7 signature against the row's certificate file.
func loadTrustedPubFile(r packRow) (*ksi.PublicationsFile, error) {
	b, err := os.ReadFile(filepath.Join(r.dir, r.pubFile))
	if err != nil {
		return nil, err
	}
	pf, err := ksi.ParsePublicationsFile(b)
	if err != nil {
		return nil, fmt.Errorf("publications file: %v", err)
	}
	if r.certFile == "" {
		return pf, nil
	}
	certs, err := verifier.LoadCertificates(filepath.Join(r.dir, r.certFile))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	// The test CA may have expired since; check at the file's creation.
	at := time.Unix(int64(pf.Header.CreationTime), 0)
	if err := verifier.VerifyPublicationsFile(pf, verifier.Trust{Roots: pool, Constraints: []verifier.Constraint{guardtimeEmail}, Time: at}); err != nil {
		return nil, err
	}
	return pf, nil
}

// guardtimeEmail is the constraint the reference tools pin by default; the
// pack's test CA signs with that address.
var guardtimeEmail, _ = verifier.ParseConstraint("E=publications@guardtime.com")

// checkRowValues compares the row's recorded facts (aggregation output,
// calendar output, times) with what Tempel computes from the signature.
func checkRowValues(sig *ksi.Signature, r packRow) string {
	h := new(ksi.Hasher)
	if r.aggrTime != "" && r.aggrTime != strconv.FormatUint(sig.SigningTime(), 10) {
		return fmt.Sprintf("aggregation time: row %s, signature %d", r.aggrTime, sig.SigningTime())
	}
	cal := sig.CalendarChain
	if cal != nil && r.pubTime != "" && r.pubTime != strconv.FormatUint(cal.PublicationTime, 10) {
		return fmt.Sprintf("publication time: row %s, signature %d", r.pubTime, cal.PublicationTime)
	}
	if r.code != "" {
		return "" // damaged signatures: the values need not compute
	}
	if r.calInput != "" {
		var out ksi.ChainResult
		var err error
		for _, c := range sig.Chains() {
			if out, err = c.Output(h, out.Level); err != nil {
				return err.Error()
			}
		}
		if !strings.EqualFold(out.Hash.Hex(), r.calInput) {
			return fmt.Sprintf("aggregation output: row %s, computed %s", r.calInput, out.Hash.Hex())
		}
	}
	if r.calOutput != "" && cal != nil {
		out, err := cal.Output(h)
		if err != nil {
			return err.Error()
		}
		if !strings.EqualFold(out.Hex(), r.calOutput) {
			return fmt.Sprintf("calendar output: row %s, computed %s", r.calOutput, out.Hex())
		}
	}
	return ""
}
