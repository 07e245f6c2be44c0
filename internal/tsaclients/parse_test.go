package tsaclients

import (
	"bytes"
	"encoding/asn1"
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
