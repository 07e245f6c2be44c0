package tsaclients

import (
	"encoding/asn1"
	"fmt"
)

// The attribute types under which signature formats carry an RFC 3161
// token in a SignerInfo's unsigned attributes.
var (
	// oidTimeStampToken is id-aa-timeStampToken (RFC 3161 appendix A):
	// CMS signatures, jar files.
	oidTimeStampToken = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 14}
	// oidSpcRFC3161 is Microsoft's Authenticode RFC 3161 countersignature.
	oidSpcRFC3161 = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 3, 3, 1}
)

// maxDepth bounds the walk over a signature's DER.
const maxDepth = 64

// findAttribute walks DER and returns the first value of the first
// attribute (SEQUENCE { OID typ, SET { value, ... } }) of type typ, as
// the value's DER.
func findAttribute(der []byte, typ asn1.ObjectIdentifier) ([]byte, error) {
	v, err := walk(der, typ, 0)
	if err != nil {
		return nil, err
	}
	if v == nil {
		return nil, fmt.Errorf("no attribute %v", typ)
	}
	return v, nil
}

func walk(der []byte, typ asn1.ObjectIdentifier, depth int) ([]byte, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("DER nested deeper than %d", maxDepth)
	}
	for len(der) > 0 {
		var v asn1.RawValue
		rest, err := asn1.Unmarshal(der, &v)
		if err != nil {
			return nil, err
		}
		der = rest
		if !v.IsCompound {
			// An OCTET STRING may wrap DER (an eContent): look inside when
			// it parses.
			if v.Class == asn1.ClassUniversal && v.Tag == asn1.TagOctetString {
				if found, err := walk(v.Bytes, typ, depth+1); err == nil && found != nil {
					return found, nil
				}
			}
			continue
		}
		if v.Class == asn1.ClassUniversal && v.Tag == asn1.TagSequence {
			if val := attributeValue(v.Bytes, typ); val != nil {
				return val, nil
			}
		}
		found, err := walk(v.Bytes, typ, depth+1)
		if err != nil || found != nil {
			return found, err
		}
	}
	return nil, nil
}

// attributeValue returns the first value if body is the content of an
// attribute of type typ, nil otherwise.
func attributeValue(body []byte, typ asn1.ObjectIdentifier) []byte {
	var oid asn1.ObjectIdentifier
	rest, err := asn1.Unmarshal(body, &oid)
	if err != nil || !oid.Equal(typ) {
		return nil
	}
	var set asn1.RawValue
	if _, err := asn1.Unmarshal(rest, &set); err != nil || set.Tag != asn1.TagSet || !set.IsCompound {
		return nil
	}
	var first asn1.RawValue
	if _, err := asn1.Unmarshal(set.Bytes, &first); err != nil {
		return nil
	}
	return first.FullBytes
}
