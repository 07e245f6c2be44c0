package ksi

import (
	"bytes"
	"encoding/base32"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"strings"
	"testing"

	"github.com/tempel-ksi/tempel/ksi/tlv"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex in test: %v", err)
	}
	return b
}

// pubStringFromBody encodes body with a correct CRC appended, so tests can
// build strings that pass the checksum but break another rule.
func pubStringFromBody(body []byte) string {
	raw := binary.BigEndian.AppendUint32(append([]byte(nil), body...), crc32.ChecksumIEEE(body))
	return base32.StdEncoding.EncodeToString(raw)
}

// The worked examples of docs/design/formats.md#publication-strings and the libksi test vector
// (ksi_publicationsfile_test.c testPublicationStringEncodingAndDecoding).
var pubStringVectors = []struct {
	name string
	time uint64
	hash string
	crc  uint32 // 0 when the source does not give it
	str  string
}{
	{
		name: "spec-goksi-last-record",
		time: 1534291200,
		hash: "01AED22832EB1BC500D190A0E58614B0829EF348A7C2C878690F1454C5F794D6C7",
		crc:  0x1B95BE0F,
		str:  "AAAAAA-C3ONWQ-AANO2I-UDF2Y3-YUANDE-FA4WDB-JMECT3-ZURJ6C-ZB4GSD-YUKTC7-PFGWY4-NZLPQP",
	},
	{
		name: "spec-test-pack-user-publication",
		time: 1560537246,
		hash: "0185A472A61DD6AAF35E3BBCFFDD3F8BD553CE362C58DEF8E7FABAA8521D6C5210",
		str:  "AAAAAA-C5APUJ-4AMFUR-ZKMHOW-VLZV4O-5477OT-7C6VKP-HDMLCY-334OP6-V2VBJB-23CSCC-4NN2EH",
	},
	{
		name: "libksi-publications-tlv",
		time: 1397520000,
		hash: "01a1b5238ffb05fccfa67546266a0b2d7130f6656026033b6b578c12e4fbbe231a",
		str:  "AAAAAA-CTJR3I-AANBWU-RY76YF-7TH2M5-KGEZVA-WLLRGD-3GKYBG-AM5WWV-4MCLSP-XPRDDI-UFMHBA",
	},
}

func TestPublicationStringVectors(t *testing.T) {
	for _, v := range pubStringVectors {
		t.Run(v.name, func(t *testing.T) {
			h, err := ParseImprint(mustHex(t, v.hash))
			if err != nil {
				t.Fatal(err)
			}
			if got := PublicationString(v.time, h); got != v.str {
				t.Errorf("PublicationString = %s, want %s", got, v.str)
			}
			p, err := ParsePublicationString(v.str)
			if err != nil {
				t.Fatalf("ParsePublicationString: %v", err)
			}
			if p.Time != v.time || !p.Hash.Equal(h) {
				t.Errorf("parsed (%d, %s), want (%d, %s)", p.Time, p.Hash, v.time, h)
			}
			if want := NewPublishedData(v.time, h).Raw; !bytes.Equal(p.Raw, want) {
				t.Errorf("Raw = %x, want %x", p.Raw, want)
			}
			if got := p.String(); got != v.str {
				t.Errorf("PublishedData.String = %s, want %s", got, v.str)
			}
			if v.crc != 0 {
				raw, err := base32.StdEncoding.DecodeString(strings.ReplaceAll(v.str, "-", ""))
				if err != nil {
					t.Fatal(err)
				}
				if got := binary.BigEndian.Uint32(raw[len(raw)-4:]); got != v.crc {
					t.Errorf("CRC = %08X, want %08X", got, v.crc)
				}
			}
		})
	}
}

func TestPublicationStringRoundTrip(t *testing.T) {
	times := []uint64{0, 1, 1534291200, 1<<63 + 12345, ^uint64(0)}
	for a := range 256 {
		alg := HashAlg(a)
		if !alg.Known() {
			continue
		}
		digest := bytes.Repeat([]byte{byte(a) + 0x5A}, alg.Size())
		h, err := NewImprint(alg, digest)
		if err != nil {
			t.Fatal(err)
		}
		for _, tm := range times {
			s := PublicationString(tm, h)
			// 6-character groups, only the last may be shorter.
			groups := strings.Split(s, "-")
			for i, g := range groups {
				if len(g) > 6 || (i < len(groups)-1 && len(g) != 6) || g == "" {
					t.Fatalf("%s: bad grouping in %s", alg, s)
				}
			}
			for _, in := range []string{s, strings.ReplaceAll(s, "-", ""), "-" + strings.ReplaceAll(s, "-", "--") + "-"} {
				p, err := ParsePublicationString(in)
				if err != nil {
					t.Fatalf("%s t=%d: parse %q: %v", alg, tm, in, err)
				}
				if p.Time != tm || !p.Hash.Equal(h) {
					t.Fatalf("%s t=%d: parsed (%d, %s)", alg, tm, p.Time, p.Hash)
				}
				e, err := tlv.ReadOne(p.Raw)
				if err != nil {
					t.Fatal(err)
				}
				q, err := ParsePublishedData(e)
				if err != nil || q.Time != tm || !q.Hash.Equal(h) {
					t.Fatalf("%s t=%d: Raw does not decode back: %v", alg, tm, err)
				}
			}
		}
	}
}

func TestParsePublicationStringErrors(t *testing.T) {
	good := pubStringVectors[0].str
	goodRaw, err := base32.StdEncoding.DecodeString(strings.ReplaceAll(good, "-", ""))
	if err != nil {
		t.Fatal(err)
	}
	goodBody := goodRaw[:len(goodRaw)-4]

	flipped := []byte(good)
	if flipped[22] == 'A' {
		flipped[22] = 'B'
	} else {
		flipped[22] = 'A'
	}

	withAlg := func(a byte, digestLen int) string {
		body := append(append([]byte(nil), goodBody[:8]...), a)
		return pubStringFromBody(append(body, make([]byte, digestLen)...))
	}
	// 33 raw bytes (SHA-1) need 53 base32 characters; the 53rd carries
	// 3 unused bits, which the canonical form leaves zero.
	sha1Str := strings.ReplaceAll(withAlg(byte(SHA1), 20), "-", "")
	i := strings.IndexByte(sha1Str, '=') - 1
	nonCanon := sha1Str[:i] + string(base32StdAlphabet[strings.IndexByte(base32StdAlphabet, sha1Str[i])|1]) + sha1Str[i+1:]

	tests := []struct {
		name, in, want string
		alg            bool // also wraps ErrUnknownAlg
	}{
		{"empty", "", "too short", false},
		{"too long", strings.Repeat("A", MaxPublicationStringLen+1), "too long", false},
		{"lower case", strings.ToLower(good), "invalid character", false},
		{"space", strings.Replace(good, "-", " ", 1), "invalid character", false},
		{"newline", strings.Replace(good, "-", "\n", 1), "invalid character", false},
		{"base32 digit 1", strings.Replace(good, "A", "1", 1), "invalid character", false},
		{"non-ascii", good + "é", "invalid character", false},
		{"missing padding", strings.TrimRight(sha1Str, "="), "bad base32", false},
		{"extra padding", good + "========", "bad base32", false},
		{"padding inside", "AAAAAA==" + strings.ReplaceAll(good, "-", ""), "bad base32", false},
		{"non-canonical trailing bits", nonCanon, "non-canonical", false},
		{"too short", pubStringFromBody(goodBody[:8]), "too short", false},
		{"bad checksum", string(flipped), "bad checksum", false},
		{"last 5 bytes cut", strings.ReplaceAll(good, "-", "")[:64], "bad checksum", false},
		{"reserved alg 0x03", withAlg(0x03, 32), "unknown hash algorithm", true},
		{"unknown alg 0x7f", withAlg(0x7F, 32), "unknown hash algorithm", true},
		{"digest too short", withAlg(byte(SHA2_256), 20), "SHA-256 needs 45", false},
		{"digest too long", withAlg(byte(SHA1), 32), "SHA-1 needs 33", false},
		{"no digest", withAlg(byte(SHA2_256), 0), "SHA-256 needs 45", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParsePublicationString(tc.in)
			if err == nil {
				t.Fatalf("ParsePublicationString(%q) = (%d, %s), want error", tc.in, p.Time, p.Hash)
			}
			if !errors.Is(err, ErrFormat) {
				t.Errorf("error %v does not wrap ErrFormat", err)
			}
			if tc.alg != errors.Is(err, ErrUnknownAlg) {
				t.Errorf("errors.Is(%v, ErrUnknownAlg) = %v, want %v", err, !tc.alg, tc.alg)
			}
			if !strings.Contains(err.Error(), "publication string: ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

const base32StdAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

// Padding characters are grouped like the data characters (docs/design/formats.md#publication-strings).
func TestPublicationStringPadding(t *testing.T) {
	h, err := NewImprint(SHA1, make([]byte, 20))
	if err != nil {
		t.Fatal(err)
	}
	s := PublicationString(0, h)
	// 33 bytes -> 56 characters with 3 '='; 9 groups of 6 and one of 2.
	if len(strings.ReplaceAll(s, "-", "")) != 56 || !strings.HasSuffix(s, "=-==") {
		t.Errorf("SHA-1 publication string %s: want 56 characters ending in \"=-==\"", s)
	}
}
