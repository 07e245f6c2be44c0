package pdu_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/tempel-ksi/tempel/internal/testpack"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/pdu"
	"github.com/tempel-ksi/tempel/ksi/tlv"
)

// seedRecorded adds the recorded PDU files matching the globs (relative to
// the test data root) to the corpus. testpack.Lookup does not skip when
// the data is absent: missing data only loses seeds, and the committed
// corpus under testdata/fuzz still runs.
func seedRecorded(f *testing.F, globs ...string) {
	f.Helper()
	root, ok := testpack.Lookup()
	if !ok {
		return
	}
	for _, g := range globs {
		files, _ := filepath.Glob(filepath.Join(root, g))
		for _, p := range files {
			if b, err := os.ReadFile(p); err == nil {
				f.Add(b)
			}
		}
	}
}

// fuzzKey is the HMAC key of the recorded files.
var fuzzKey = []byte("anon")

// checkFuzzed is the property every parser must have: errors are format
// errors; a parsed message re-encodes (with its own HMAC algorithm when
// Tempel can compute it), the encoding parses again to the same values
// and verifies with the key it was made with.
func checkFuzzed(t *testing.T, k kind, b []byte) {
	d, err := parseAs(k, b)
	if err != nil {
		if !errors.Is(err, ksi.ErrFormat) {
			t.Fatalf("error is not a format error: %v", err)
		}
		return
	}
	if len(b) > pdu.MaxSize {
		t.Fatalf("parsed %d bytes, more than a PDU can be", len(b))
	}
	if !bytes.Equal(d.env.Raw, b) {
		t.Fatal("Raw is not the input")
	}
	_ = d.env.Verify(fuzzKey) // must not panic; the result depends on the input
	alg := d.env.HMAC.Alg()
	if !alg.Supported() {
		alg = ksi.SHA2_256
	}
	out, err := d.encode(alg, fuzzKey)
	if err != nil {
		// Encoding adds a status to responses that lack it and may
		// outgrow the 65535-byte limit; nothing else may fail.
		if errors.Is(err, tlv.ErrTooLarge) {
			return
		}
		t.Fatalf("parsed message does not re-encode: %v", err)
	}
	d2, err := parseAs(k, out)
	if err != nil {
		t.Fatalf("re-encoded message does not parse: %v\n%x", err, out)
	}
	if !reflect.DeepEqual(d2.value, d.value) {
		t.Fatalf("re-encoded message decodes differently\n got %+v\nwant %+v", d2.value, d.value)
	}
	if d.env.HMAC != nil {
		if err := d2.env.Verify(fuzzKey); err != nil {
			t.Fatalf("re-encoded message does not verify: %v", err)
		}
	}
}

func FuzzParseAggregatorRequest(f *testing.F) {
	seedRecorded(f, "tlv/v2/aggr_request.tlv")
	f.Fuzz(func(t *testing.T, b []byte) { checkFuzzed(t, aggrReq, b) })
}

func FuzzParseAggregatorResponse(f *testing.F) {
	// One file per shape: most recorded responses differ only in their
	// signature, and large near-duplicate seeds cost fuzzing time in
	// minimisation.
	seedRecorded(f, "tlv/v2/aggr_response.tlv", "tlv/v2/aggr_error_pdu.tlv", "tlv/v2/aggr_conf_response-max_req_1024.tlv",
		"tlv/v2/ok_aggr_error_response_301.tlv", "tlv/v2/ok_aggr_err_response-1.tlv", "tlv/v2/tlv_*.tlv", "tlv/v2/nok*aggr*.tlv",
		"tlv/v2/ok-sig-2014-07-01.1-aggr_response-*.tlv", "tlv/*aggr_response-pduv1.tlv")
	f.Fuzz(func(t *testing.T, b []byte) { checkFuzzed(t, aggrResp, b) })
}

func FuzzParseExtenderRequest(f *testing.F) {
	seedRecorded(f, "tlv/v2/extend_request.tlv")
	f.Fuzz(func(t *testing.T, b []byte) { checkFuzzed(t, extReq, b) })
}

func FuzzParseExtenderResponse(f *testing.F) {
	seedRecorded(f, "tlv/v2/ext_error_pdu.tlv", "tlv/v2/extend_response.tlv", "tlv/v2/ok_extender_error_response_101.tlv",
		"tlv/v2/nok-extender-*.tlv", "tlv/v2/ok-sig-2014-04-30.1-extend_response-*.tlv",
		"test_pack/policy-verification-signatures/resources/extender-response-for-CAL-03.tlv", "tlv/*extend_response-pduv1.tlv")
	f.Fuzz(func(t *testing.T, b []byte) { checkFuzzed(t, extResp, b) })
}
