package ksi_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/tempel-ksi/tempel/internal/testpack"
	"github.com/tempel-ksi/tempel/ksi"
)

func FuzzParseSignature(f *testing.F) {
	ts := buildTestSignature(f)
	f.Add(ts.Raw)
	if single, err := ksi.SignatureFromElements([][]byte{ts.low.Raw}); err == nil {
		f.Add(single.Raw)
	}
	if root, ok := testpack.Lookup(); ok {
		for _, p := range [][]string{
			{"tlv", okSigName},
			{"tlv", "ok-sig-2014-04-30.1-extended.ksig"},
			{"tlv", "ok-sig-metadata-with-padding.ksig"},
			{"tlv", "ok-legacy-sig-2014-06.gtts.ksig"},
			{"test_pack", "valid-signatures", "rfc3161-signature.ksig"},
			{"test_pack", "valid-signatures", "signature-non-critical-element-with-child-elements-in-aggregation-chain.ksig"},
			{"test_pack", "valid-signatures", "signature-SHA3-256-in-calendar-hash-chain-right-link.ksig"},
		} {
			if b, err := os.ReadFile(filepath.Join(append([]string{root}, p...)...)); err == nil {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ksi.ParseSignature(data)
		if err != nil {
			if !errors.Is(err, ksi.ErrFormat) {
				t.Fatalf("error %v does not wrap ErrFormat", err)
			}
			if s != nil {
				t.Fatalf("non-nil signature with error %v", err)
			}
			return
		}
		enc, err := s.Encode()
		if err != nil {
			t.Fatalf("Encode: %v", err)
		}
		if !bytes.Equal(enc, data) {
			t.Fatalf("Encode differs from the parsed bytes\n got %x\nwant %x", enc, data)
		}
		if len(s.Chains()) == 0 || s.DocumentHash() == nil {
			t.Fatalf("parsed signature without chains or document hash")
		}
		var h ksi.Hasher
		exerciseSignature(&h, s)
		// Every chain, not only the consistent sequence, must compute or
		// fail cleanly.
		for _, c := range s.AggregationChains {
			for _, lvl := range []uint64{0, 255} {
				_, _ = c.Output(&h, lvl)
			}
		}
	})
}
