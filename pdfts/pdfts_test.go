package pdfts

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// basePDF is a small PDF of one empty page.
const basePDF = "%PDF-1.7\n" +
	"1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n" +
	"2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count 1 >>\nendobj\n" +
	"3 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>\nendobj\n" +
	"trailer\n<< /Root 1 0 R >>\n%%EOF\n"

// appendStamp appends a signature object as a signer does: /Contents
// reserved as zeros, the /ByteRange written around it, then the DER that
// sign returns for the digest of the covered bytes put in place.
func appendStamp(t testing.TB, pdf []byte, subFilter string, sign func(digest []byte) []byte) []byte {
	t.Helper()
	const reserve = 4096 // bytes of DER the /Contents string can hold
	obj := fmt.Sprintf("9 0 obj\n<< /Type /DocTimeStamp /Filter /Adobe.PPKLite /SubFilter /%s /ByteRange [0 %010d %010d %010d] /Contents <", subFilter, 0, 0, 0)
	tail := "> /Prop_Build << /App << /Name /Test >> >> >>\nendobj\n%%EOF\n"
	start := len(pdf) + len(obj) - 1 // the '<' of /Contents
	end := start + 2 + 2*reserve     // after its '>'
	total := end + len(tail) - 1
	br := fmt.Sprintf("[0 %010d %010d %010d]", start, end, total-end)
	obj = strings.Replace(obj, fmt.Sprintf("[0 %010d %010d %010d]", 0, 0, 0), br, 1)
	out := append(append([]byte{}, pdf...), obj...)
	out = append(out, bytes.Repeat([]byte("0"), 2*reserve)...)
	out = append(out, tail...)
	h := sha256.New()
	h.Write(out[:start])
	h.Write(out[end:])
	der := sign(h.Sum(nil))
	copy(out[start+1:], strings.ToUpper(hex.EncodeToString(der)))
	return out
}

// fakeToken is a DER SEQUENCE holding the digest, standing in for a
// token (this package does not read tokens).
func fakeToken(digest []byte) []byte {
	return append([]byte{0x30, byte(2 + len(digest)), 0x04, byte(len(digest))}, digest...)
}

func TestFind(t *testing.T) {
	pdf := appendStamp(t, []byte(basePDF), "ETSI.RFC3161", fakeToken)
	stamps, err := Find(pdf)
	if err != nil {
		t.Fatal(err)
	}
	if len(stamps) != 1 {
		t.Fatalf("%d stamps, want 1", len(stamps))
	}
	s := stamps[0]
	if !s.DocTimeStamp || !s.WholeFile {
		t.Fatalf("stamp %+v: want a document time-stamp over the whole file", s)
	}
	digest := s.Hash(pdf, sha256.New())
	if !bytes.Equal(s.Contents, fakeToken(digest)) {
		t.Fatalf("contents %x, want the DER made for the covered bytes' digest", s.Contents)
	}

	// Bytes appended after the stamp: it no longer covers the file.
	more := append(append([]byte{}, pdf...), "% an incremental update\n"...)
	if stamps, err := Find(more); err != nil || stamps[0].WholeFile {
		t.Fatalf("after an append: %+v, %v", stamps, err)
	}
	// A change inside the covered bytes changes the digest.
	changed := bytes.Replace(pdf, []byte("612 792"), []byte("612 793"), 1)
	if bytes.Equal(stamps[0].Hash(changed, sha256.New()), digest) {
		t.Fatal("a changed page gives the same digest")
	}
	// Two stamps: a signature, then a document time-stamp.
	two := appendStamp(t, appendStamp(t, []byte(basePDF), "ETSI.CAdES.detached", fakeToken), "ETSI.RFC3161", fakeToken)
	stamps, err = Find(two)
	if err != nil || len(stamps) != 2 || stamps[0].DocTimeStamp || !stamps[1].DocTimeStamp || stamps[0].WholeFile || !stamps[1].WholeFile {
		t.Fatalf("two signatures: %+v, %v", stamps, err)
	}
	if stamps, err := Find([]byte(basePDF)); err != nil || len(stamps) != 0 {
		t.Fatalf("a PDF without signatures: %+v, %v", stamps, err)
	}
}

func TestFindDamaged(t *testing.T) {
	pdf := appendStamp(t, []byte(basePDF), "ETSI.RFC3161", fakeToken)
	cases := map[string][]byte{
		"range past the end":     bytes.Replace(pdf, []byte("/ByteRange [0 "), []byte("/ByteRange [0 9"), 1),
		"three numbers":          bytes.Replace(pdf, []byte("/ByteRange [0 "), []byte("/ByteRange ["), 1),
		"not hex":                bytes.Replace(pdf, []byte("<30"), []byte("<3X"), 1),
		"truncated":              pdf[:len(pdf)-40],
		"bytes after the DER":    bytes.Replace(pdf, []byte("0000>"), []byte("0001>"), 1),
		"no array":               bytes.Replace(pdf, []byte("/ByteRange ["), []byte("/ByteRange ("), 1),
		"first span not at zero": bytes.Replace(pdf, []byte("/ByteRange [0 "), []byte("/ByteRange [1 "), 1),
	}
	for name, b := range cases {
		if _, err := Find(b); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: %v, want ErrFormat", name, err)
		}
	}
}

func FuzzFind(f *testing.F) {
	f.Add(appendStamp(f, []byte(basePDF), "ETSI.RFC3161", fakeToken))
	f.Add([]byte(basePDF))
	f.Add([]byte("/ByteRange [0 1 2 3] <30>"))
	f.Fuzz(func(t *testing.T, b []byte) {
		stamps, err := Find(b)
		if err != nil {
			return
		}
		for _, s := range stamps {
			s.Hash(b, sha256.New()) // the spans fit the file
		}
	})
}
