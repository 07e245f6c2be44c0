package tsaclients

import (
	"bytes"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
)

// The helpers that take tokens out of other formats find what is there
// and refuse what is not, with an error rather than a panic.
func TestFindAttribute(t *testing.T) {
	value := []byte{0x04, 0x03, 'a', 'b', 'c'}
	attr := func(oid asn1.ObjectIdentifier) []byte {
		o, err := asn1.Marshal(oid)
		if err != nil {
			t.Fatal(err)
		}
		set := append([]byte{0x31, byte(len(value))}, value...)
		body := append(o, set...)
		return append([]byte{0x30, byte(len(body))}, body...)
	}
	// An attribute nested in a SET inside a context-tagged field, after
	// another attribute, as unsigned attributes sit in a SignerInfo.
	inner := append(attr(oidSpcRFC3161), attr(oidTimeStampToken)...)
	set := append([]byte{0xa1, byte(len(inner))}, inner...)
	der := append([]byte{0x30, byte(len(set))}, set...)
	got, err := findAttribute(der, oidTimeStampToken)
	if err != nil || !bytes.Equal(got, value) {
		t.Fatalf("findAttribute = %x, %v; want %x", got, err, value)
	}
	if _, err := findAttribute(der, asn1.ObjectIdentifier{1, 2, 3}); err == nil {
		t.Fatal("found an attribute that is not there")
	}
	for _, bad := range [][]byte{nil, {0x30}, {0x30, 0x05, 0x01}, bytes.Repeat([]byte{0x30, 0x80}, 100)} {
		if v, err := findAttribute(bad, oidTimeStampToken); err == nil {
			t.Errorf("findAttribute(%x) = %x, want an error", bad, v)
		}
	}
}

func TestDocumentTimeStamp(t *testing.T) {
	token := []byte{0x30, 0x03, 0x02, 0x01, 0x07}
	mk := func(pad int) []byte {
		contents := "<" + hex.EncodeToString(token) + strings.Repeat("00", pad) + ">"
		head := "%PDF-1.7\n1 0 obj << /Type /Sig /SubFilter /ETSI.RFC3161 /ByteRange [0 AAAA BBBB CCCC] /Contents "
		tail := " >> endobj\n%%EOF\n"
		b := len(head)
		c := b + len(contents)
		br := fmt.Sprintf("[0 %4d %4d %4d]", b, c, len(tail))
		head = strings.Replace(head, "[0 AAAA BBBB CCCC]", br, 1)
		return []byte(head + contents + tail)
	}
	pdf := mk(20)
	got, digest, err := documentTimeStamp(pdf)
	if err != nil {
		t.Fatal(err)
	}
	m := byteRange.FindSubmatch(pdf)
	b := atoi(t, m[2])
	c := atoi(t, m[3])
	want := sha256.Sum256(append(append([]byte{}, pdf[:b]...), pdf[c:]...))
	if !bytes.Equal(got, token) || !bytes.Equal(digest, want[:]) {
		t.Fatalf("documentTimeStamp = %x, %x; want %x, %x", got, digest, token, want)
	}
	for name, bad := range map[string][]byte{
		"no byte range":      []byte("%PDF-1.7\n"),
		"a byte range short": append(mk(20), ' '),
		"not hex":            bytes.Replace(mk(20), []byte("<30"), []byte("<zz"), 1),
		"not DER":            bytes.Replace(mk(20), []byte("<3003"), []byte("<307f"), 1),
	} {
		if _, _, err := documentTimeStamp(bad); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func atoi(t *testing.T, b []byte) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscan(string(b), &n); err != nil {
		t.Fatal(err)
	}
	return n
}
