package ksi

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tempel-ksi/tempel/internal/testpack"
)

// seedFromTestData adds each named test data file to the fuzz corpus.
// Missing test data only loses seeds: the committed corpus under
// testdata/fuzz still runs.
func seedFromTestData(f *testing.F, add func([]byte), paths ...[]string) {
	f.Helper()
	root, ok := testpack.Lookup()
	if !ok {
		return
	}
	for _, p := range paths {
		b, err := os.ReadFile(filepath.Join(append([]string{root}, p...)...))
		if err != nil {
			continue
		}
		add(b)
	}
}

func FuzzParsePublicationString(f *testing.F) {
	for _, v := range pubStringVectors {
		f.Add(v.str)
	}
	f.Add("AAAAAA-CIKRNY-AAII76-VSASL4-7QGBDN-CRX7QS-DVLKMT-6KEU4P-Z327ZK-S55EGN-PA7CMX-YSWJTE")
	f.Add("")
	f.Add("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Add("AAAAAA-AAAAAA-AZJC35-UQ====")
	f.Add(strings.Repeat("-", 300))
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePublicationString(s)
		if err != nil {
			if p.Raw != nil || p.Hash != nil {
				t.Fatalf("error %v with non-zero result", err)
			}
			return
		}
		// Dashes are free; everything else is canonical, so the string
		// re-encodes to the input with the dashes regrouped.
		out := PublicationString(p.Time, p.Hash)
		if strings.ReplaceAll(out, "-", "") != strings.ReplaceAll(s, "-", "") {
			t.Fatalf("%q parsed to (%d, %s), which encodes as %q", s, p.Time, p.Hash, out)
		}
		q, err := ParsePublicationString(out)
		if err != nil || q.Time != p.Time || !bytes.Equal(q.Raw, p.Raw) {
			t.Fatalf("re-parse of %q: %v", out, err)
		}
		if _, err := ParseImprint(p.Hash); err != nil {
			t.Fatalf("parsed hash %x is not an imprint: %v", []byte(p.Hash), err)
		}
	})
}

func FuzzParsePublicationsFile(f *testing.F) {
	seedFromTestData(f, func(b []byte) { f.Add(b) },
		[]string{"publications", "publications-nocerts.bin"},
		[]string{"publications", "publications-contains-not-critical-unknown-element.bin"},
		[]string{"tlv", "ok-cert-3.pem-pubfile.bin"},
	)
	f.Add([]byte(PubFileMagic))
	f.Add([]byte(PubFileMagic + "\x87\x01\x00\x06\x01\x01\x01\x02\x01\x00\x87\x04\x00\x01\x00"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		pf, err := ParsePublicationsFile(b)
		if err != nil {
			if pf != nil {
				t.Fatalf("error %v with a non-nil file", err)
			}
			return
		}
		signed := pf.SignedBytes()
		if !bytes.HasPrefix(pf.Raw, signed) || !bytes.HasPrefix(signed, []byte(PubFileMagic)) {
			t.Fatal("SignedBytes is not a prefix of Raw starting with the magic")
		}
		// The signature element is last: nothing else is unsigned.
		if len(signed)+4+len(pf.Signature) != len(pf.Raw) {
			t.Fatalf("signed %d + signature element %d != file %d", len(signed), 4+len(pf.Signature), len(pf.Raw))
		}
		for _, r := range pf.Publications {
			if _, err := ParseImprint(r.Data.Hash); err != nil {
				t.Fatalf("publication with a bad imprint: %v", err)
			}
			_ = r.Data.String()
		}
		_ = pf.Latest()
		_ = pf.FirstPublicationAfter(0)

		// A file the builder can express re-encodes byte for byte.
		if len(pf.Unknown) != 0 {
			return
		}
		for i := 1; i < len(pf.Publications); i++ {
			if pf.Publications[i].Data.Time < pf.Publications[i-1].Data.Time {
				return
			}
		}
		content, err := BuildPublicationsFileContent(pf.Header, pf.Certificates, pf.Publications)
		if err != nil {
			t.Fatalf("BuildPublicationsFileContent of a parsed file: %v", err)
		}
		if !bytes.Equal(content, signed) {
			t.Fatalf("rebuilt content differs:\n got % x\nwant % x", content, signed)
		}
		if len(pf.Signature) == 0 {
			return // the builder refuses an empty signature
		}
		full, err := AppendPublicationsFileSignature(content, pf.Signature)
		if err != nil {
			t.Fatalf("AppendPublicationsFileSignature: %v", err)
		}
		// The input may set flags on the 0x704 header, which the writer
		// leaves clear; the rest must match byte for byte.
		if !bytes.Equal(full[len(content)+2:], b[len(signed)+2:]) || full[len(content)+1] != b[len(signed)+1] ||
			full[len(content)]&^0x60 != b[len(signed)]&^0x60 {
			t.Fatalf("rebuilt file differs:\n got % x\nwant % x", full, b)
		}
	})
}
