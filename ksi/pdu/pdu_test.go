package pdu_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/tempel-ksi/tempel/internal/testpack"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/pdu"
	"github.com/tempel-ksi/tempel/ksi/tlv"
)

// anon is the login id and HMAC key of every recorded PDU (MANIFEST §5).
var anon = []byte("anon")

// kind says which parser a recorded file is for.
type kind int

const (
	aggrReq kind = iota
	aggrResp
	extReq
	extResp
)

// decoded is what the tests compare across the four message types.
type decoded struct {
	env      *pdu.Envelope
	ids      []uint64 // request ids of the request/response payloads
	statuses []uint64 // statuses of the response payloads
	errp     *pdu.ErrorPayload
	config   bool // config payload (or config request) present
	acks     int
	unknown  int
	value    any // the parsed message, with Raw and HMAC cleared by strip
	encode   func(alg ksi.HashAlg, key []byte) ([]byte, error)
}

// parseAs parses b with the parser for k and flattens the result.
func parseAs(k kind, b []byte) (decoded, error) {
	switch k {
	case aggrReq:
		r, err := pdu.ParseAggregatorRequest(b)
		if err != nil {
			return decoded{}, err
		}
		d := decoded{env: &r.Envelope, config: r.ConfigRequest, acks: len(r.Acks), unknown: len(r.Unknown), encode: r.Encode}
		for _, p := range r.Requests {
			d.ids = append(d.ids, p.RequestID)
		}
		c := *r
		c.Envelope = pdu.Envelope{Header: r.Header}
		d.value = c
		return d, nil
	case extReq:
		r, err := pdu.ParseExtenderRequest(b)
		if err != nil {
			return decoded{}, err
		}
		d := decoded{env: &r.Envelope, config: r.ConfigRequest, unknown: len(r.Unknown), encode: r.Encode}
		for _, p := range r.Requests {
			d.ids = append(d.ids, p.RequestID)
		}
		c := *r
		c.Envelope = pdu.Envelope{Header: r.Header}
		d.value = c
		return d, nil
	case aggrResp:
		r, err := pdu.ParseAggregatorResponse(b)
		if err != nil {
			return decoded{}, err
		}
		d := decoded{env: &r.Envelope, errp: r.Error, config: r.Config != nil, acks: len(r.Acks), unknown: len(r.Unknown), encode: r.Encode}
		for _, p := range r.Responses {
			d.ids = append(d.ids, p.RequestID)
			d.statuses = append(d.statuses, p.Status)
		}
		if r.HMAC == nil {
			d.encode = func(ksi.HashAlg, []byte) ([]byte, error) {
				return pdu.EncodeErrorPDU(pdu.TypeAggregatorResponse, *r.Error)
			}
		}
		c := *r
		c.Envelope = pdu.Envelope{Header: r.Header}
		d.value = c
		return d, nil
	case extResp:
		r, err := pdu.ParseExtenderResponse(b)
		if err != nil {
			return decoded{}, err
		}
		d := decoded{env: &r.Envelope, errp: r.Error, config: r.Config != nil, acks: len(r.Acks), unknown: len(r.Unknown), encode: r.Encode}
		for _, p := range r.Responses {
			d.ids = append(d.ids, p.RequestID)
			d.statuses = append(d.statuses, p.Status)
		}
		if r.HMAC == nil {
			d.encode = func(ksi.HashAlg, []byte) ([]byte, error) {
				return pdu.EncodeErrorPDU(pdu.TypeExtenderResponse, *r.Error)
			}
		}
		c := *r
		c.Envelope = pdu.Envelope{Header: r.Header}
		d.value = c
		return d, nil
	}
	panic("unknown kind")
}

// want is the expectation for one recorded file, from MANIFEST §5 and the
// libksi test that uses the file.
type want struct {
	kind     kind
	err      string // substring of the parse error; empty: must parse
	pdus     int    // PDUs back to back in the file; 0 means 1
	ids      []uint64
	statuses []uint64
	errp     *pdu.ErrorPayload // error element of the first PDU
	bare     bool              // bare error response: no header, no HMAC
	config   bool
	acks     int
	unknown  int
	alg      ksi.HashAlg // HMAC algorithm; zero value means SHA-256
	// notCanonical marks files that do not re-encode byte for byte: a
	// missing status (which Tempel always writes) or flags on known
	// elements (which Tempel never sets).
	notCanonical bool
}

func resp(k kind, ids ...uint64) want {
	return want{kind: k, ids: ids, statuses: make([]uint64, len(ids))}
}

var recordedWants = map[string]want{
	"aggr_request.tlv":                                                       {kind: aggrReq, ids: []uint64{1}},
	"extend_request.tlv":                                                     {kind: extReq, ids: []uint64{1}},
	"aggr-response-no-cal-auth-and-invalid-cal.tlv":                          {kind: aggrResp, ids: []uint64{1}, statuses: []uint64{0}, notCanonical: true},
	"aggr_conf_response-max_req_1024.tlv":                                    {kind: aggrResp, config: true},
	"aggr_conf_response-max_req_512.tlv":                                     {kind: aggrResp, config: true},
	"aggr_error_pdu.tlv":                                                     {kind: aggrResp, bare: true, errp: &pdu.ErrorPayload{Status: 0x102, Message: "The request could not be authenticated"}},
	"ext_error_pdu.tlv":                                                      {kind: extResp, bare: true, errp: &pdu.ErrorPayload{Status: 0x102, Message: "The request could not be authenticated"}},
	"aggr_response.tlv":                                                      {kind: aggrResp, ids: []uint64{1}, statuses: []uint64{0}, notCanonical: true},
	"ok-local_aggr_lvl4_resp.tlv":                                            {kind: aggrResp, ids: []uint64{1}, statuses: []uint64{0}, notCanonical: true},
	"all-wrong-hash-chains-in-signature-extend_response.tlv":                 resp(extResp, 1),
	"cal_algo_switch-extend_resposne.tlv":                                    resp(extResp, 1),
	"extend_response.tlv":                                                    resp(extResp, 2),
	"extender-response-no-cal-auth-and-invalid-cal.tlv":                      resp(extResp, 2),
	"nok-sig-2015-09-13_21-34-00-extend_responce.tlv":                        resp(extResp, 1),
	"nok-sig-wrong-aggre-time-extend_response.tlv":                           resp(extResp, 1),
	"nok_aggr_response-invalid-aggr-chain.tlv":                               resp(aggrResp, 1),
	"ok-aggr-resp-1460631424.tlv":                                            resp(aggrResp, 1),
	"signing-request-with-level-response.tlv":                                resp(aggrResp, 1),
	"test-masking-lvl-metadata-root-sig-lvl-12-hash-1e1587ca82-response.tlv": resp(aggrResp, 1),
	"test_create_aggregated_response.tlv":                                    resp(aggrResp, 1),
	"test_masking_response.tlv":                                              resp(aggrResp, 1),
	"test_meta_data_masking.tlv":                                             resp(aggrResp, 1),
	"test_meta_data_response.tlv":                                            resp(aggrResp, 1),
	"ok-sig-2016-03-08-aggr_response.tlv":                                    resp(aggrResp, 1),
	"ok-sig-2016-04-13-preaggr_response.tlv":                                 resp(aggrResp, 1),

	// Envelope order and schema violations (libksi ksi_net_pduv2_test.c).
	"nok-aggr-response-header-not-first.tlv":                           {kind: aggrResp, err: "header is not the first element"},
	"nok-extender-response-header-not-first.tlv":                       {kind: extResp, err: "header is not the first element"},
	"nok-aggr-response-hmac-not-last.tlv":                              {kind: aggrResp, err: "hmac is not the last element"},
	"nok-extender-response-hmac-not-last.tlv":                          {kind: extResp, err: "hmac is not the last element"},
	"nok_aggr_response_missing_header.tlv":                             {kind: aggrResp, err: "missing header"},
	"nok_aggr_response_bad_tag.tlv":                                    {kind: aggrResp, err: "missing header (first element is 0x99)"},
	"nok_aggr_response-1.tlv":                                          {kind: aggrResp, err: "header: element 0x1: tlv: string is not zero-terminated"},
	"ok-sig-2014-07-01.1-aggr_response_ordered.tlv":                    {kind: aggrResp, err: "header: element 0x1: tlv: string is not zero-terminated"},
	"tlv_missing_tag.tlv":                                              {kind: aggrResp, err: "error element: missing status"},
	"tlv_unknown_tag.tlv":                                              {kind: aggrResp, err: "error element: unknown critical element 0x1"},
	"ok-sig-2014-07-01.1-aggr_response-critical-unknown-payload.tlv":   {kind: aggrResp, err: "unknown critical payload 0x1399"},
	"ok-sig-2014-04-30.1-extend_response-critical-payload-element.tlv": {kind: extResp, err: "unknown critical payload 0x1399"},

	// Aggregator responses around ok-sig-2014-07-01.1.ksig.
	"ok-sig-2014-07-01.1-aggr-response-multiple-responses.tlv":           {kind: aggrResp, pdus: 3, ids: []uint64{50}, statuses: []uint64{0}},
	"ok-sig-2014-07-01.1-aggr_response-duplicate-response-nok.tlv":       {kind: aggrResp, pdus: 2, ids: []uint64{1}, statuses: []uint64{0}},
	"ok-sig-2014-07-01.1-aggr_response-duplicate-response-ok.tlv":        {kind: aggrResp, pdus: 2, ids: []uint64{1}, statuses: []uint64{0}},
	"ok-sig-2014-07-01.1-aggr_response-hmac_sha512.tlv":                  {kind: aggrResp, ids: []uint64{1}, statuses: []uint64{0}, alg: ksi.SHA2_512},
	"ok-sig-2014-07-01.1-aggr_response-multi-payload.tlv":                resp(aggrResp, 1, 153),
	"ok-sig-2014-07-01.1-aggr_response-non-critical-unknown-payload.tlv": {kind: aggrResp, ids: []uint64{1}, statuses: []uint64{0}, unknown: 1},
	"ok-sig-2014-07-01.1-aggr_response-response-with-error-payload.tlv":  {kind: aggrResp, ids: []uint64{1}, statuses: []uint64{0}, errp: &pdu.ErrorPayload{Status: 0x101, Message: "unexpected error payload"}},
	"ok-sig-2014-07-01.1-aggr_response-with-conf-and-ack.tlv":            {kind: aggrResp, ids: []uint64{1}, statuses: []uint64{0}, config: true, acks: 1},
	"ok-sig-2014-07-01.1-aggr_response-with-flags.tlv":                   {kind: aggrResp, ids: []uint64{1}, statuses: []uint64{0}, notCanonical: true},
	"ok-sig-2014-07-01.1-aggr_response-with-status-301.tlv":              {kind: aggrResp, ids: []uint64{1}, statuses: []uint64{0x301}},
	"ok-sig-2014-07-01.1-aggr_response-wrong-id.tlv":                     resp(aggrResp, 78187493520),
	"ok-sig-2014-07-01.1-aggr_response.tlv":                              resp(aggrResp, 1),
	"ok_aggr_err_response-1.tlv":                                         {kind: aggrResp, ids: []uint64{1}, statuses: []uint64{0x103}},
	"ok_aggr_error_response_301.tlv":                                     {kind: aggrResp, errp: &pdu.ErrorPayload{Status: 0x301, Message: "No response from upstream servers"}},

	// Extender responses around ok-sig-2014-04-30.1.ksig.
	"ok-sig-2014-04-30.1-extend_response-hmac_sha512.tlv":                  {kind: extResp, ids: []uint64{1}, statuses: []uint64{0}, alg: ksi.SHA2_512},
	"ok-sig-2014-04-30.1-extend_response-input_hash_null.tlv":              resp(extResp, 1),
	"ok-sig-2014-04-30.1-extend_response-multi-payload.tlv":                resp(extResp, 1, 153),
	"ok-sig-2014-04-30.1-extend_response-non-critical-payload-element.tlv": {kind: extResp, ids: []uint64{1}, statuses: []uint64{0}, unknown: 1},
	"ok-sig-2014-04-30.1-extend_response-response-with-error-payload.tlv":  {kind: extResp, ids: []uint64{1}, statuses: []uint64{0}, errp: &pdu.ErrorPayload{Status: 0x101, Message: "unexpected error payload"}},
	"ok-sig-2014-04-30.1-extend_response-with-conf-and-ack.tlv":            {kind: extResp, ids: []uint64{1}, statuses: []uint64{0}, config: true, acks: 1},
	"ok-sig-2014-04-30.1-extend_response-with-conf.tlv":                    {kind: extResp, ids: []uint64{1}, statuses: []uint64{0}, config: true},
	"ok-sig-2014-04-30.1-extend_response-with-flags.tlv":                   {kind: extResp, ids: []uint64{1}, statuses: []uint64{0}, notCanonical: true},
	"ok-sig-2014-04-30.1-extend_response-with-status-301.tlv":              {kind: extResp, ids: []uint64{1}, statuses: []uint64{0x301}},
	"ok-sig-2014-04-30.1-extend_response-wrong-id.tlv":                     resp(extResp, 78187493520),
	"ok-sig-2014-04-30.1-extend_response.tlv":                              resp(extResp, 1),
	"ok-sig-2014-04-30.1-head-extend_response.tlv":                         resp(extResp, 1),
	"ok-sig-2014-04-30.1-nok-extend_response-1.tlv":                        resp(extResp, 1),
	"ok-sig-2014-04-30.1-nok-extend_response-3.tlv":                        resp(extResp, 1),
	"ok_extend_err_response-1.tlv":                                         {kind: extResp, ids: []uint64{47806}, statuses: []uint64{0x103}},

	// Conformance pack resources: extender responses for policy tests.
	"extender-response-for-CAL-03.tlv":                                               resp(extResp, 1),
	"extender-response-for-different-time.tlv":                                       resp(extResp, 1),
	"extender-response-with-changed-times.tlv":                                       resp(extResp, 1),
	"extension-response-with-deprecated-algorithm.tlv":                               resp(extResp, 1),
	"extender-response-for-signature-with-deprecated-function-in-calendar-chain.tlv": resp(extResp, 1),
}

// expectation returns the want for a recorded file. Two families are
// described by their names: ok-aggr_resp-req_id_<hex>h.tlv (request id in
// hex) and ok_extender_error_response_<status>.tlv (request id 47806).
func expectation(name string) (want, bool) {
	if h, ok := strings.CutPrefix(name, "ok-aggr_resp-req_id_"); ok {
		id, err := strconv.ParseUint(strings.TrimSuffix(h, "h.tlv"), 16, 64)
		return resp(aggrResp, id), err == nil
	}
	if s, ok := strings.CutPrefix(name, "ok_extender_error_response_"); ok {
		st, err := strconv.ParseUint(strings.TrimSuffix(s, ".tlv"), 16, 64)
		return want{kind: extResp, ids: []uint64{47806}, statuses: []uint64{st}}, err == nil
	}
	w, ok := recordedWants[name]
	return w, ok
}

// recordedFiles lists the recorded PDU v2 files: tlv/v2 and the
// conformance pack's resources.
func recordedFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(testpack.Path(t, "tlv", "v2", "*.tlv"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := filepath.Glob(filepath.Join(testpack.PackDir(t), "*", "resources", "*.tlv"))
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, res...)
	if len(files) < 100 {
		t.Fatalf("found only %d recorded PDU files", len(files))
	}
	return files
}

// splitPDUs splits a file into the PDUs written back to back in it.
func splitPDUs(t *testing.T, b []byte) [][]byte {
	t.Helper()
	var out [][]byte
	for len(b) > 0 {
		e, rest, err := tlv.Read(b)
		if err != nil {
			t.Fatalf("splitting PDUs: %v", err)
		}
		out = append(out, e.Raw)
		b = rest
	}
	return out
}

func TestRecordedPDUs(t *testing.T) {
	for _, path := range recordedFiles(t) {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			w, ok := expectation(name)
			if !ok {
				t.Fatalf("no expectation for %s: add it to recordedWants", name)
			}
			b := testpack.Read(t, mustRel(t, path)...)
			pdus := splitPDUs(t, b)
			if n := max(w.pdus, 1); len(pdus) != n {
				t.Fatalf("%d PDUs in file, want %d", len(pdus), n)
			}
			for i, one := range pdus {
				d, err := parseAs(w.kind, one)
				if w.err != "" {
					if err == nil {
						t.Fatalf("parsed, want error containing %q", w.err)
					}
					if !errors.Is(err, ksi.ErrFormat) || !strings.Contains(err.Error(), w.err) || !strings.HasPrefix(err.Error(), "pdu: ") {
						t.Fatalf("error %q, want a ksi.ErrFormat containing %q", err, w.err)
					}
					return
				}
				if err != nil {
					t.Fatalf("PDU %d: %v", i, err)
				}
				if i == 0 {
					checkFacts(t, w, d)
				}
				checkHMAC(t, w, d)
				checkReencode(t, w, d, one)
			}
		})
	}
}

// mustRel turns an absolute path under the test data root back into the
// elements testpack.Read takes.
func mustRel(t *testing.T, path string) []string {
	t.Helper()
	rel, err := filepath.Rel(testpack.Root(t), path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(rel, string(filepath.Separator))
}

func checkFacts(t *testing.T, w want, d decoded) {
	t.Helper()
	if !slices.Equal(d.ids, w.ids) {
		t.Errorf("request ids %v, want %v", d.ids, w.ids)
	}
	if !slices.Equal(d.statuses, w.statuses) {
		t.Errorf("statuses %#x, want %#x", d.statuses, w.statuses)
	}
	if !reflect.DeepEqual(d.errp, w.errp) {
		t.Errorf("error element %+v, want %+v", d.errp, w.errp)
	}
	if d.config != w.config || d.acks != w.acks || d.unknown != w.unknown {
		t.Errorf("config %v, acks %d, unknown %d; want %v, %d, %d", d.config, d.acks, d.unknown, w.config, w.acks, w.unknown)
	}
	if w.bare {
		if d.env.HMAC != nil || d.env.Header != (pdu.Header{}) {
			t.Errorf("bare error response has header %+v, hmac %v", d.env.Header, d.env.HMAC)
		}
		return
	}
	if d.env.Header.LoginID != "anon" {
		t.Errorf("login id %q, want anon", d.env.Header.LoginID)
	}
	alg := w.alg
	if alg == 0 {
		alg = ksi.SHA2_256
	}
	if got := d.env.HMAC.Alg(); got != alg {
		t.Errorf("hmac algorithm %v, want %v", got, alg)
	}
}

func checkHMAC(t *testing.T, w want, d decoded) {
	t.Helper()
	if w.bare {
		if err := d.env.Verify(anon); !errors.Is(err, pdu.ErrNoHMAC) {
			t.Errorf("Verify of a bare error response: %v, want ErrNoHMAC", err)
		}
		return
	}
	if err := d.env.Verify(anon); err != nil {
		t.Errorf("Verify with key anon: %v", err)
	}
	for _, key := range [][]byte{[]byte("anoN"), []byte("ano"), nil} {
		if err := d.env.Verify(key); !errors.Is(err, pdu.ErrHMAC) {
			t.Errorf("Verify with key %q: %v, want ErrHMAC", key, err)
		}
	}
}

// checkReencode encodes the parsed message again with key anon: canonical
// files come back byte for byte; the others at least decode to the same
// values and verify.
func checkReencode(t *testing.T, w want, d decoded, orig []byte) {
	t.Helper()
	alg := d.env.HMAC.Alg()
	out, err := d.encode(alg, anon)
	if err != nil {
		t.Fatalf("re-encode: %v", err)
	}
	if !w.notCanonical && !bytes.Equal(out, orig) {
		t.Errorf("re-encoded bytes differ from the file\n got %x\nwant %x", out, orig)
	}
	d2, err := parseAs(w.kind, out)
	if err != nil {
		t.Fatalf("parse of re-encoded: %v", err)
	}
	if !reflect.DeepEqual(d2.value, d.value) {
		t.Errorf("re-encoded message decodes differently\n got %+v\nwant %+v", d2.value, d.value)
	}
	if !w.bare {
		if err := d2.env.Verify(anon); err != nil {
			t.Errorf("Verify of re-encoded: %v", err)
		}
	}
}

// TestErrorStatusFiles checks the extender's error status files 0x101 to
// 0x301 (docs/design/formats.md#status-codes) one by one.
func TestErrorStatusFiles(t *testing.T) {
	for _, st := range []uint64{0x101, 0x102, 0x103, 0x104, 0x105, 0x106, 0x107, 0x200, 0x201, 0x202, 0x300, 0x301} {
		name := fmt.Sprintf("ok_extender_error_response_%x.tlv", st)
		t.Run(name, func(t *testing.T) {
			r, err := pdu.ParseExtenderResponse(testpack.Read(t, "tlv", "v2", name))
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Verify(anon); err != nil {
				t.Fatal(err)
			}
			if len(r.Responses) != 1 || r.Responses[0].Status != st || r.Responses[0].RequestID != 47806 || r.Responses[0].ErrorMessage == "" {
				t.Fatalf("responses %+v, want one with id 47806, status %#x and a message", r.Responses, st)
			}
			if r.Responses[0].CalendarChain != nil {
				t.Errorf("error response carries a calendar chain")
			}
		})
	}
	r, err := pdu.ParseAggregatorResponse(testpack.Read(t, "tlv", "v2", "ok_aggr_error_response_301.tlv"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Error == nil || r.Error.Status != pdu.StatusUpstreamTimeout || r.HMAC == nil {
		t.Fatalf("aggregator 0x301: error %+v, hmac %v", r.Error, r.HMAC)
	}
}

func TestVersion1Refused(t *testing.T) {
	for _, tc := range []struct {
		file  string
		parse func([]byte) error
	}{
		{"ok-sig-2014-07-01.1-aggr_response-pduv1.tlv", func(b []byte) error { _, err := pdu.ParseAggregatorResponse(b); return err }},
		{"ok-sig-2014-04-30.1-extend_response-pduv1.tlv", func(b []byte) error { _, err := pdu.ParseExtenderResponse(b); return err }},
		{"ok-sig-2014-07-01.1-aggr_response-pduv1.tlv", func(b []byte) error { _, err := pdu.ParseAggregatorRequest(b); return err }},
		{"ok-sig-2014-04-30.1-extend_response-pduv1.tlv", func(b []byte) error { _, err := pdu.ParseExtenderRequest(b); return err }},
	} {
		err := tc.parse(testpack.Read(t, "tlv", tc.file))
		if !errors.Is(err, pdu.ErrVersion1) || !errors.Is(err, ksi.ErrFormat) {
			t.Errorf("%s: %v, want ErrVersion1 and ErrFormat", tc.file, err)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "pdu: PDU v1 not supported") {
			t.Errorf("%s: message %q", tc.file, err)
		}
	}
}

// TestRequestsRoundTrip encodes the recorded requests from values built in
// code (not from the parsed Raw) and compares bytes (docs/design/formats.md#aggregation, #extension).
func TestRequestsRoundTrip(t *testing.T) {
	laptop, err := ksi.ParseImprintText("0111A700B0C8066C47ECBA05ED37BC14DCADB238552D86C659342D1D7E87B8772D")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("aggr_request.tlv", func(t *testing.T) {
		file := testpack.Read(t, "tlv", "v2", "aggr_request.tlv")
		if len(file) != 88 {
			t.Fatalf("file is %d bytes, want 88", len(file))
		}
		parsed, err := pdu.ParseAggregatorRequest(file)
		if err != nil {
			t.Fatal(err)
		}
		want := pdu.AggregatorRequest{
			Envelope: pdu.Envelope{Header: pdu.Header{LoginID: "anon"}},
			Requests: []pdu.AggregationRequest{{RequestID: 1, Hash: laptop}},
		}
		if !reflect.DeepEqual(parsed.Requests, want.Requests) || parsed.Header != want.Header {
			t.Fatalf("parsed %+v %+v, want %+v %+v", parsed.Header, parsed.Requests, want.Header, want.Requests)
		}
		out, err := want.Encode(ksi.SHA2_256, anon)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, file) {
			t.Fatalf("encoded\n%x\nwant\n%x", out, file)
		}
	})
	t.Run("extend_request.tlv", func(t *testing.T) {
		file := testpack.Read(t, "tlv", "v2", "extend_request.tlv")
		parsed, err := pdu.ParseExtenderRequest(file)
		if err != nil {
			t.Fatal(err)
		}
		want := pdu.ExtenderRequest{
			Envelope: pdu.Envelope{Header: pdu.Header{LoginID: "anon"}},
			Requests: []pdu.ExtendRequest{{RequestID: 1, AggregationTime: 0x53610150, PublicationTime: 0x53740380, HasPublicationTime: true}},
		}
		if !reflect.DeepEqual(parsed.Requests, want.Requests) || parsed.Header != want.Header {
			t.Fatalf("parsed %+v %+v, want %+v %+v", parsed.Header, parsed.Requests, want.Header, want.Requests)
		}
		out, err := want.Encode(ksi.SHA2_256, anon)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, file) {
			t.Fatalf("encoded\n%x\nwant\n%x", out, file)
		}
		// docs/design/formats.md#extension quotes the start of the file.
		if p := mustHex(t, "8320003d 01070105 616e6f6e00 020f 010101 020453610150 030453740380 1f2101"); !bytes.HasPrefix(out, p) {
			t.Fatalf("encoding does not start with %x", p)
		}
	})
}

// TestPrefixesFail cuts every recorded PDU at every length: each strict
// prefix must fail cleanly with a format error, never panic.
func TestPrefixesFail(t *testing.T) {
	for _, path := range recordedFiles(t) {
		name := filepath.Base(path)
		w, ok := expectation(name)
		if !ok || w.err != "" {
			continue
		}
		b := testpack.Read(t, mustRel(t, path)...)
		one := splitPDUs(t, b)[0]
		for n := range len(one) {
			if _, err := parseAs(w.kind, one[:n]); !errors.Is(err, ksi.ErrFormat) {
				t.Fatalf("%s cut to %d bytes: %v, want a format error", name, n, err)
			}
		}
	}
}

// TestConfigPayload checks the config example of docs/design/formats.md#configuration and a
// config with every field.
func TestConfigPayload(t *testing.T) {
	r, err := pdu.ParseAggregatorResponse(testpack.Read(t, "tlv", "v2", "aggr_conf_response-max_req_1024.tlv"))
	if err != nil {
		t.Fatal(err)
	}
	want := pdu.Config{
		MaxLevel: 17, HasMaxLevel: true,
		AggregationAlgorithm: ksi.SHA2_256, HasAggregationAlgorithm: true,
		AggregationPeriodMS: 400, HasAggregationPeriodMS: true,
		MaxRequests: 1024, HasMaxRequests: true,
	}
	if r.Config == nil || !reflect.DeepEqual(*r.Config, want) {
		t.Fatalf("config %+v, want %+v", r.Config, want)
	}
	out, err := (&pdu.AggregatorResponse{Envelope: pdu.Envelope{Header: pdu.Header{LoginID: "anon"}}, Config: &want}).Encode(ksi.SHA2_256, anon)
	if err != nil {
		t.Fatal(err)
	}
	if spec := mustHex(t, "040E 01011102010103020190 04020400"); !bytes.Contains(out, spec) {
		t.Fatalf("encoding %x lacks the spec example %x", out, spec)
	}

	full := pdu.Config{
		MaxLevel: 0, HasMaxLevel: true,
		AggregationAlgorithm: ksi.SHA1, HasAggregationAlgorithm: true,
		ParentURIs:        []string{"http://a.example/", "ksi+tcp://b.example:3332"},
		CalendarFirstTime: 1, HasCalendarFirstTime: true,
		CalendarLastTime: 1 << 40, HasCalendarLastTime: true,
	}
	x := pdu.ExtenderResponse{Envelope: pdu.Envelope{Header: pdu.Header{LoginID: "anon"}}, Config: &full}
	out, err = x.Encode(ksi.SHA2_512, anon)
	if err != nil {
		t.Fatal(err)
	}
	back, err := pdu.ParseExtenderResponse(out)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*back.Config, full) {
		t.Fatalf("config round trip: %+v, want %+v", *back.Config, full)
	}
	if err := back.Verify(anon); err != nil {
		t.Fatal(err)
	}
}

func TestEncodeErrorPDU(t *testing.T) {
	// docs/design/formats.md#status-codes: the 10-byte reply for status 0x101.
	out, err := pdu.EncodeErrorPDU(pdu.TypeAggregatorResponse, pdu.ErrorPayload{Status: pdu.StatusInvalidRequest})
	if err != nil {
		t.Fatal(err)
	}
	if want := mustHex(t, "82210006 0304 04020101"); !bytes.Equal(out, want) {
		t.Fatalf("got %x, want %x", out, want)
	}
	r, err := pdu.ParseAggregatorResponse(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.Error == nil || r.Error.Status != 0x101 || r.HMAC != nil || len(r.Responses) != 0 {
		t.Fatalf("parsed %+v", r)
	}
	x, err := pdu.EncodeErrorPDU(pdu.TypeExtenderResponse, pdu.ErrorPayload{Status: pdu.StatusAuthFailure, Message: "no such user"})
	if err != nil {
		t.Fatal(err)
	}
	if xr, err := pdu.ParseExtenderResponse(x); err != nil || *xr.Error != (pdu.ErrorPayload{Status: 0x102, Message: "no such user"}) {
		t.Fatalf("extender error pdu: %+v, %v", xr, err)
	}
	for _, typ := range []uint16{pdu.TypeAggregatorRequest, pdu.TypeExtenderRequest, 0x203} {
		if _, err := pdu.EncodeErrorPDU(typ, pdu.ErrorPayload{Status: 1}); err == nil {
			t.Errorf("type %#x: no error", typ)
		}
	}
	if _, err := pdu.EncodeErrorPDU(pdu.TypeAggregatorResponse, pdu.ErrorPayload{Status: 1, Message: "a\x00b"}); err == nil {
		t.Error("message with a zero byte: no error")
	}
}

// TestResponseEmbedsRaw checks that response encoders copy signature
// elements and calendar chains unchanged and refuse anything else.
func TestResponseEmbedsRaw(t *testing.T) {
	src, err := pdu.ParseAggregatorResponse(testpack.Read(t, "tlv", "v2", "ok-sig-2014-07-01.1-aggr_response.tlv"))
	if err != nil {
		t.Fatal(err)
	}
	elems := src.Responses[0].SignatureElements
	if len(elems) != 5 {
		t.Fatalf("%d signature elements, want 5", len(elems))
	}
	r := pdu.AggregatorResponse{
		Envelope: pdu.Envelope{Header: pdu.Header{LoginID: "anon", InstanceID: 7, HasInstanceID: true}},
		Responses: []pdu.AggregationResponse{
			{RequestID: 9, SignatureElements: elems},
			{RequestID: 10, Status: pdu.StatusAggrOverQuota, ErrorMessage: "over quota"},
		},
	}
	out, err := r.Encode(ksi.SHA2_256, []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	back, err := pdu.ParseAggregatorResponse(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := back.Verify([]byte("secret")); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Responses, r.Responses) || back.Header != r.Header {
		t.Fatalf("round trip: %+v", back.Responses)
	}
	for _, e := range elems {
		if !bytes.Contains(out, e) {
			t.Fatal("signature element not embedded unchanged")
		}
	}

	ext, err := pdu.ParseExtenderResponse(testpack.Read(t, "tlv", "v2", "ok-sig-2014-04-30.1-extend_response.tlv"))
	if err != nil {
		t.Fatal(err)
	}
	chain := ext.Responses[0].CalendarChain
	x := pdu.ExtenderResponse{
		Envelope:  pdu.Envelope{Header: pdu.Header{LoginID: "anon"}},
		Responses: []pdu.ExtendResponse{{RequestID: 3, CalendarLastTime: 1400112000, HasCalendarLastTime: true, CalendarChain: chain}},
	}
	out, err = x.Encode(ksi.SHA2_256, anon)
	if err != nil {
		t.Fatal(err)
	}
	xb, err := pdu.ParseExtenderResponse(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(xb.Responses[0].CalendarChain, chain) || !bytes.Contains(out, chain) {
		t.Fatal("calendar chain not embedded unchanged")
	}

	bad := map[string]pdu.AggregationResponse{
		"signature wrapper 0x800":     {SignatureElements: [][]byte{mustHex(t, "88000000")}},
		"trailing bytes":              {SignatureElements: [][]byte{append(slices.Clone(elems[0]), 0)}},
		"truncated element":           {SignatureElements: [][]byte{elems[0][:10]}},
		"critical unknown":            {Unknown: [][]byte{mustHex(t, "1300")}},
		"non-critical but known type": {Unknown: [][]byte{mustHex(t, "410101")}},
		"message with zero byte":      {ErrorMessage: "x\x00"},
		"message not utf-8":           {ErrorMessage: "\xff"},
	}
	for name, p := range bad {
		r := pdu.AggregatorResponse{Envelope: pdu.Envelope{Header: pdu.Header{LoginID: "anon"}}, Responses: []pdu.AggregationResponse{p}}
		if _, err := r.Encode(ksi.SHA2_256, anon); err == nil {
			t.Errorf("%s: encoded", name)
		}
	}
	badExt := pdu.ExtenderResponse{
		Envelope:  pdu.Envelope{Header: pdu.Header{LoginID: "anon"}},
		Responses: []pdu.ExtendResponse{{CalendarChain: elems[0]}}, // an 0x801, not a calendar chain
	}
	if _, err := badExt.Encode(ksi.SHA2_256, anon); err == nil {
		t.Error("aggregation chain accepted as calendar chain")
	}
}

// TestEncodeRequestErrors checks what request encoders refuse.
func TestEncodeRequestErrors(t *testing.T) {
	hash := append([]byte{1}, make([]byte, 32)...)
	ok := pdu.AggregatorRequest{
		Envelope: pdu.Envelope{Header: pdu.Header{LoginID: "anon"}},
		Requests: []pdu.AggregationRequest{{RequestID: 1, Hash: hash}},
	}
	if _, err := ok.Encode(ksi.SHA2_256, anon); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		edit func(r *pdu.AggregatorRequest)
		alg  ksi.HashAlg
	}{
		{"no payload", func(r *pdu.AggregatorRequest) { r.Requests = nil }, ksi.SHA2_256},
		{"bad imprint", func(r *pdu.AggregatorRequest) { r.Requests[0].Hash = hash[:20] }, ksi.SHA2_256},
		{"reserved algorithm imprint", func(r *pdu.AggregatorRequest) { r.Requests[0].Hash = append([]byte{3}, hash[1:]...) }, ksi.SHA2_256},
		{"login id with zero byte", func(r *pdu.AggregatorRequest) { r.Header.LoginID = "an\x00on" }, ksi.SHA2_256},
		{"hmac algorithm SM3", func(*pdu.AggregatorRequest) {}, ksi.SM3},
		{"hmac algorithm 0x03", func(*pdu.AggregatorRequest) {}, ksi.HashAlg(3)},
		{"ack of wrong type", func(r *pdu.AggregatorRequest) { r.Acks = [][]byte{mustHex(t, "0400")} }, ksi.SHA2_256},
	}
	for _, tc := range tests {
		r := ok
		r.Requests = slices.Clone(ok.Requests)
		tc.edit(&r)
		if out, err := r.Encode(tc.alg, anon); err == nil || !strings.HasPrefix(err.Error(), "pdu: ") {
			t.Errorf("%s: %x, %v; want a pdu: error", tc.name, out, err)
		}
	}
	if _, err := (&pdu.ExtenderRequest{Envelope: ok.Envelope}).Encode(ksi.SHA2_256, anon); err == nil {
		t.Error("extender request without payload encoded")
	}
	// A config request alone is a valid request (ksi-tool --dump-conf).
	out, err := (&pdu.ExtenderRequest{Envelope: ok.Envelope, ConfigRequest: true}).Encode(ksi.SHA2_256, anon)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out, []byte{0x04, 0x00, 0x1F}) {
		t.Fatalf("config request not written as 04 00: %x", out)
	}
}

// TestVerifyTamper flips every bit of an encoded request: the result must
// fail to parse or fail to verify, never pass.
func TestVerifyTamper(t *testing.T) {
	r := pdu.AggregatorRequest{
		Envelope: pdu.Envelope{Header: pdu.Header{LoginID: "user", MessageID: 5, HasMessageID: true}},
		Requests: []pdu.AggregationRequest{{RequestID: 77, Hash: append([]byte{1}, bytes.Repeat([]byte{0xAB}, 32)...), Level: 3, HasLevel: true}},
	}
	for _, alg := range []ksi.HashAlg{ksi.SHA2_256, ksi.SHA2_512, ksi.SHA1, ksi.RIPEMD160, ksi.SHA3_256} {
		key := []byte("k3y")
		b, err := r.Encode(alg, key)
		if err != nil {
			t.Fatal(err)
		}
		p, err := pdu.ParseAggregatorRequest(b)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Verify(key); err != nil {
			t.Fatalf("%v: %v", alg, err)
		}
		if p.HMAC.Alg() != alg {
			t.Fatalf("hmac algorithm %v, want %v", p.HMAC.Alg(), alg)
		}
		for i := range len(b) * 8 {
			m := slices.Clone(b)
			m[i/8] ^= 1 << (i % 8)
			p, err := pdu.ParseAggregatorRequest(m)
			if err != nil {
				continue
			}
			if err := p.Verify(key); err == nil {
				t.Fatalf("%v: flipping bit %d still verifies", alg, i)
			}
		}
	}
}

func TestVerifyUnsupportedAlg(t *testing.T) {
	b := pduBytes(0x221, header("anon"), el(0x02, el(0x01, nil)), el(0x1F, append([]byte{byte(ksi.SM3)}, make([]byte, 32)...)))
	r, err := pdu.ParseAggregatorResponse(b)
	if err != nil {
		t.Fatal(err)
	}
	err = r.Verify(anon)
	if err == nil || errors.Is(err, pdu.ErrHMAC) || !errors.Is(err, ksi.ErrUnsupportedAlg) {
		t.Fatalf("Verify with SM3: %v, want ErrUnsupportedAlg", err)
	}
	if err := (&pdu.Envelope{}).Verify(anon); !errors.Is(err, pdu.ErrNoHMAC) {
		t.Fatalf("empty envelope: %v", err)
	}
	if pdu.ErrHMAC.Error() != "pdu: hmac mismatch" {
		t.Fatalf("ErrHMAC says %q", pdu.ErrHMAC)
	}
}

// Builders of synthetic PDUs for the table tests.

// el encodes one element of type typ (TLV16 when needed) whose value is
// the concatenation of parts.
func el(typ uint16, parts ...[]byte) []byte { return elf(typ, false, parts...) }

// nc is el with the non-critical flag set.
func nc(typ uint16, parts ...[]byte) []byte { return elf(typ, true, parts...) }

func elf(typ uint16, nonCritical bool, parts ...[]byte) []byte {
	v := bytes.Join(parts, nil)
	b, err := tlv.Encode(typ, nonCritical, false, v)
	if err != nil {
		panic(err)
	}
	return b
}

func pduBytes(typ uint16, children ...[]byte) []byte { return el(typ, children...) }

func str(s string) []byte { return append([]byte(s), 0) }

func header(login string) []byte { return el(0x01, el(0x01, str(login))) }

var (
	zeroHMAC  = el(0x1F, append([]byte{1}, make([]byte, 32)...))
	sha256imp = append([]byte{1}, bytes.Repeat([]byte{0x11}, 32)...)
)

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestParseRules covers the envelope and payload rules on synthetic
// input: each case names the rule and the error it must produce.
func TestParseRules(t *testing.T) {
	mkAggrReq := func(payload ...[]byte) []byte {
		return pduBytes(0x220, header("anon"), el(0x02, payload...), zeroHMAC)
	}
	okPayload := [][]byte{el(0x01, []byte{1}), el(0x02, sha256imp)}
	long := make([]byte, 70000)
	long[0], long[1] = 0x82, 0x20

	tests := []struct {
		name    string
		k       kind
		in      []byte
		wantErr string // empty: must parse
		tlvErr  error  // the tlv sentinel the error must wrap, if any
		check   func(t *testing.T, d decoded)
	}{
		{name: "minimal aggregation request", k: aggrReq, in: mkAggrReq(okPayload...)},
		{name: "level with leading zeros", k: aggrReq, in: mkAggrReq(el(0x01, []byte{0, 0, 1}), el(0x02, sha256imp), el(0x03, []byte{0, 5})),
			check: func(t *testing.T, d decoded) {
				r := d.value.(pdu.AggregatorRequest)
				if r.Requests[0].RequestID != 1 || !r.Requests[0].HasLevel || r.Requests[0].Level != 5 {
					t.Errorf("request %+v", r.Requests[0])
				}
			}},
		{name: "request id of 8 bytes", k: aggrReq, in: mkAggrReq(el(0x01, bytes.Repeat([]byte{0xFF}, 8)), el(0x02, sha256imp)),
			check: func(t *testing.T, d decoded) {
				if d.ids[0] != 1<<64-1 {
					t.Errorf("id %d", d.ids[0])
				}
			}},
		{name: "request id of 9 bytes", k: aggrReq, in: mkAggrReq(el(0x01, make([]byte, 9)), el(0x02, sha256imp)), wantErr: "element 0x1", tlvErr: tlv.ErrIntTooLong},
		{name: "missing request id", k: aggrReq, in: mkAggrReq(el(0x02, sha256imp)), wantErr: "missing request id"},
		{name: "missing request hash", k: aggrReq, in: mkAggrReq(el(0x01, []byte{1})), wantErr: "missing request hash"},
		{name: "repeated request id", k: aggrReq, in: mkAggrReq(el(0x01, []byte{1}), el(0x01, []byte{2}), el(0x02, sha256imp)), wantErr: "repeated request id"},
		{name: "imprint of wrong length", k: aggrReq, in: mkAggrReq(el(0x01, []byte{1}), el(0x02, sha256imp[:20])), wantErr: "malformed imprint"},
		{name: "unknown critical field", k: aggrReq, in: mkAggrReq(append(okPayload, el(0x07, nil))...), wantErr: "unknown critical element 0x7"},
		{name: "unknown non-critical field ignored", k: aggrReq, in: mkAggrReq(append(okPayload, nc(0x07, []byte{9}))...)},
		{name: "login id not terminated", k: aggrReq, in: pduBytes(0x220, el(0x01, el(0x01, []byte("anon"))), el(0x02, okPayload...), zeroHMAC), wantErr: "header", tlvErr: tlv.ErrNotUTF8Z},
		{name: "login id not utf-8", k: aggrReq, in: pduBytes(0x220, header("an\xffon"), el(0x02, okPayload...), zeroHMAC), wantErr: "not valid UTF-8"},
		{name: "login id with zero byte", k: aggrReq, in: pduBytes(0x220, header("an\x00on"), el(0x02, okPayload...), zeroHMAC), wantErr: "zero byte"},
		{name: "missing login id", k: aggrReq, in: pduBytes(0x220, el(0x01, el(0x02, []byte{1})), el(0x02, okPayload...), zeroHMAC), wantErr: "missing login id"},
		{name: "header as TLV16", k: aggrReq, in: pduBytes(0x220, []byte{0x80, 0x01, 0x00, 0x07, 0x01, 0x05, 'a', 'n', 'o', 'n', 0}, el(0x02, okPayload...), zeroHMAC)},
		{name: "header with flags and unknown non-critical field", k: aggrReq, in: pduBytes(0x220, nc(0x01, el(0x01, str("anon")), nc(0x09, nil)), el(0x02, okPayload...), zeroHMAC)},
		{name: "no payload", k: aggrReq, in: pduBytes(0x220, header("anon"), zeroHMAC), wantErr: "no payload"},
		{name: "only a non-critical payload", k: aggrReq, in: pduBytes(0x220, header("anon"), nc(0x10, nil), zeroHMAC), wantErr: "no payload"},
		{name: "config request alone", k: aggrReq, in: pduBytes(0x220, header("anon"), el(0x04), zeroHMAC),
			check: func(t *testing.T, d decoded) {
				if !d.config {
					t.Error("config request not seen")
				}
			}},
		{name: "config request with a field", k: aggrReq, in: pduBytes(0x220, header("anon"), el(0x04, el(0x01, nil)), zeroHMAC), wantErr: "config request: unknown critical element 0x1"},
		{name: "ack request", k: aggrReq, in: pduBytes(0x220, header("anon"), el(0x05, el(0x01, []byte{1, 2, 3})), zeroHMAC)},
		{name: "error element in request", k: aggrReq, in: pduBytes(0x220, header("anon"), el(0x02, okPayload...), el(0x03, el(0x04, nil)), zeroHMAC), wantErr: "unknown critical payload 0x3"},
		{name: "empty pdu", k: aggrReq, in: pduBytes(0x220), wantErr: "empty pdu"},
		{name: "missing hmac", k: aggrReq, in: pduBytes(0x220, header("anon"), el(0x02, okPayload...)), wantErr: "missing hmac"},
		{name: "header only", k: aggrReq, in: pduBytes(0x220, header("anon")), wantErr: "missing hmac"},
		{name: "hmac not last", k: aggrReq, in: pduBytes(0x220, header("anon"), zeroHMAC, el(0x02, okPayload...)), wantErr: "hmac is not the last element"},
		{name: "two hmacs", k: aggrReq, in: pduBytes(0x220, header("anon"), zeroHMAC, el(0x02, okPayload...), zeroHMAC), wantErr: "hmac is not the last element"},
		{name: "repeated header", k: aggrReq, in: pduBytes(0x220, header("anon"), header("anon"), el(0x02, okPayload...), zeroHMAC), wantErr: "repeated header"},
		{name: "header not first", k: aggrReq, in: pduBytes(0x220, el(0x02, okPayload...), header("anon"), zeroHMAC), wantErr: "header is not the first element"},
		{name: "non-critical element before header", k: aggrReq, in: pduBytes(0x220, nc(0x10), header("anon"), el(0x02, okPayload...), zeroHMAC), wantErr: "header is not the first element"},
		{name: "hmac with reserved algorithm", k: aggrReq, in: pduBytes(0x220, header("anon"), el(0x02, okPayload...), el(0x1F, append([]byte{3}, make([]byte, 32)...))), wantErr: "hmac"},
		{name: "hmac of wrong length", k: aggrReq, in: pduBytes(0x220, header("anon"), el(0x02, okPayload...), el(0x1F, make([]byte, 20))), wantErr: "hmac"},
		{name: "trailing bytes", k: aggrReq, in: append(mkAggrReq(okPayload...), 0), tlvErr: tlv.ErrTrailing, wantErr: "trailing"},
		{name: "truncated", k: aggrReq, in: mkAggrReq(okPayload...)[:10], tlvErr: tlv.ErrTruncated, wantErr: "truncated"},
		{name: "empty input", k: aggrReq, in: nil, tlvErr: tlv.ErrEmptyInput, wantErr: "empty input"},
		{name: "wrong envelope type", k: aggrReq, in: pduBytes(0x320, header("anon"), el(0x02, okPayload...), zeroHMAC), wantErr: "wrong pdu type 0x320, want 0x220"},
		{name: "response parsed as request", k: aggrReq, in: pduBytes(0x221, header("anon"), el(0x02, el(0x01, nil)), zeroHMAC), wantErr: "wrong pdu type 0x221"},
		{name: "larger than a pdu can be", k: aggrReq, in: long, wantErr: "more than the maximum of 65539"},
		{name: "payload is not a composite", k: aggrReq, in: pduBytes(0x220, header("anon"), el(0x02, []byte{0x01}), zeroHMAC), wantErr: "aggregation request", tlvErr: tlv.ErrTruncated},

		{name: "extend request", k: extReq, in: pduBytes(0x320, header("anon"), el(0x02, el(0x01, []byte{1}), el(0x02, []byte{0x53, 0x61, 0x01, 0x50})), zeroHMAC),
			check: func(t *testing.T, d decoded) {
				r := d.value.(pdu.ExtenderRequest)
				if r.Requests[0].AggregationTime != 0x53610150 || r.Requests[0].HasPublicationTime {
					t.Errorf("request %+v", r.Requests[0])
				}
			}},
		{name: "extend request without aggregation time", k: extReq, in: pduBytes(0x320, header("anon"), el(0x02, el(0x01, []byte{1})), zeroHMAC), wantErr: "missing aggregation time"},
		{name: "ack in extender request", k: extReq, in: pduBytes(0x320, header("anon"), el(0x04), el(0x05), zeroHMAC), wantErr: "unknown critical payload 0x5"},
		{name: "extender config request", k: extReq, in: pduBytes(0x320, header("anon"), el(0x04), nc(0x1234, []byte{1}), zeroHMAC),
			check: func(t *testing.T, d decoded) {
				if !d.config || d.unknown != 1 {
					t.Errorf("config %v, unknown %d", d.config, d.unknown)
				}
			}},

		{name: "response without status", k: aggrResp, in: pduBytes(0x221, header("anon"), el(0x02, el(0x01, []byte{7})), zeroHMAC),
			check: func(t *testing.T, d decoded) {
				if d.ids[0] != 7 || d.statuses[0] != 0 {
					t.Errorf("ids %v statuses %v", d.ids, d.statuses)
				}
			}},
		{name: "response without request id", k: aggrResp, in: pduBytes(0x221, header("anon"), el(0x02, el(0x04, nil)), zeroHMAC), wantErr: "missing request id"},
		{name: "response with a 0x800 child", k: aggrResp, in: pduBytes(0x221, header("anon"), el(0x02, el(0x01, nil), el(0x800)), zeroHMAC), wantErr: "unknown critical element 0x800"},
		{name: "response keeps unknown non-critical field", k: aggrResp, in: pduBytes(0x221, header("anon"), el(0x02, el(0x01, nil), el(0x801, []byte{1, 0}), nc(0x700, []byte{1})), zeroHMAC),
			check: func(t *testing.T, d decoded) {
				p := d.value.(pdu.AggregatorResponse).Responses[0]
				if len(p.SignatureElements) != 1 || len(p.Unknown) != 1 {
					t.Errorf("payload %+v", p)
				}
			}},
		{name: "config with two-byte algorithm", k: aggrResp, in: pduBytes(0x221, header("anon"), el(0x04, el(0x02, []byte{1, 1})), zeroHMAC), wantErr: "config: element 0x2", tlvErr: tlv.ErrIntOverflow},
		{name: "repeated config", k: aggrResp, in: pduBytes(0x221, header("anon"), el(0x04), el(0x04), zeroHMAC), wantErr: "repeated config"},
		{name: "repeated error element", k: aggrResp, in: pduBytes(0x221, header("anon"), el(0x03, el(0x04, nil)), el(0x03, el(0x04, nil)), zeroHMAC), wantErr: "repeated error element"},
		{name: "ack with a non-integer", k: aggrResp, in: pduBytes(0x221, header("anon"), el(0x05, el(0x01, make([]byte, 9))), zeroHMAC), wantErr: "ack", tlvErr: tlv.ErrIntTooLong},
		{name: "bare error", k: aggrResp, in: pduBytes(0x221, el(0x03, el(0x04, []byte{1, 2}))),
			check: func(t *testing.T, d decoded) {
				if d.errp == nil || d.errp.Status != 0x102 || d.env.HMAC != nil {
					t.Errorf("error %+v", d.errp)
				}
			}},
		{name: "bare error with non-critical neighbour", k: extResp, in: pduBytes(0x321, nc(0x10), el(0x03, el(0x04, []byte{1, 2})))},
		{name: "bare error with critical neighbour", k: aggrResp, in: pduBytes(0x221, el(0x03, el(0x04, nil)), el(0x10)), wantErr: "missing header (first element is 0x3)"},
		{name: "bare error with payload", k: aggrResp, in: pduBytes(0x221, el(0x03, el(0x04, nil)), el(0x02, el(0x01, nil))), wantErr: "missing header"},
		{name: "bare error with hmac", k: aggrResp, in: pduBytes(0x221, el(0x03, el(0x04, nil)), zeroHMAC), wantErr: "missing header"},
		{name: "two bare errors", k: aggrResp, in: pduBytes(0x221, el(0x03, el(0x04, nil)), el(0x03, el(0x04, nil))), wantErr: "repeated error element"},
		{name: "bare error in a request", k: aggrReq, in: pduBytes(0x220, el(0x03, el(0x04, nil))), wantErr: "missing header"},
		{name: "extend response with two calendar chains", k: extResp, in: pduBytes(0x321, header("anon"), el(0x02, el(0x01, nil), el(0x802), el(0x802)), zeroHMAC), wantErr: "repeated calendar chain"},
		{name: "extend response with an aggregation chain", k: extResp, in: pduBytes(0x321, header("anon"), el(0x02, el(0x01, nil), el(0x801)), zeroHMAC), wantErr: "unknown critical element 0x801"},
		{name: "extend response message not terminated", k: extResp, in: pduBytes(0x321, header("anon"), el(0x02, el(0x01, nil), el(0x05, []byte("x"))), zeroHMAC), tlvErr: tlv.ErrNotUTF8Z, wantErr: "element 0x5"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := parseAs(tc.k, tc.in)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("error %v", err)
				}
				if tc.check != nil {
					tc.check(t, d)
				}
				return
			}
			if err == nil {
				t.Fatalf("parsed, want error containing %q", tc.wantErr)
			}
			if !errors.Is(err, ksi.ErrFormat) || !strings.HasPrefix(err.Error(), "pdu: ") || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %q, want a pdu: format error containing %q", err, tc.wantErr)
			}
			if tc.tlvErr != nil && !errors.Is(err, tc.tlvErr) {
				t.Fatalf("error %q does not wrap %v", err, tc.tlvErr)
			}
		})
	}
}
