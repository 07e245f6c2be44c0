package ksi

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/tempel-ksi/tempel/internal/testpack"
	"github.com/tempel-ksi/tempel/ksi/tlv"
)

// Publications files of the test data (MANIFEST §4 and the libksi files
// under tlv/ that start with the magic), with facts computed from them.
var pubFileCases = []struct {
	path          []string
	certs, pubs   int
	unknown       int    // top-level non-critical elements
	latestTime    uint64 // 0: no publications
	latestString  string
	firstCertID   string // hex, "" when there are no certificates
	creationTime  uint64
	signatureSize int
}{
	{
		path: []string{"tlv", "ksi-publications.bin"}, certs: 10, pubs: 21,
		latestTime: 1460678400, latestString: "AAAAAA-CXCAXQ-AAODPK-L3QJCN-NWQVHL-QGHPIS-Z5MV5K-WKPT5B-V4X5B3-DN6IRS-VIOMKG-KSRYZ3",
		firstCertID: "a42c61ad", creationTime: 1461084639, signatureSize: 1429,
	},
	{
		path: []string{"test_pack", "policy-verification-signatures", "resources", "publications-file.bin"}, certs: 4, pubs: 116,
		latestTime: 1710460800, latestString: "AAAAAA-DF6OHY-AAMWLC-WDLI7J-V6IP4V-JYT32Y-PFSQ54-KPUL3V-JCHMEN-VGPL3R-AQYKHA-54JPLO",
		creationTime: 1710870545, signatureSize: 4204,
	},
	{
		path: []string{"test_pack", "policy-verification-signatures", "resources", "publications-file-resigned.bin"}, certs: 4, pubs: 116,
		latestTime: 1710460800, latestString: "AAAAAA-DF6OHY-AAMWLC-WDLI7J-V6IP4V-JYT32Y-PFSQ54-KPUL3V-JCHMEN-VGPL3R-AQYKHA-54JPLO",
		creationTime: 1710870545, signatureSize: 1411,
	},
	{
		path: []string{"test_pack", "policy-verification-signatures", "resources", "publications-file-for-deprecated-algorithm-in-calendar-chain.bin"}, certs: 2, pubs: 4,
		latestTime: 1467341200, latestString: "AAAAAA-CXOXMZ-AALR6L-A5DWBL-KF5ZRJ-SHRTFQ-OHETSP-NDFKSF-WQFLP4-CTHR5Y-WBZNSE-YRF36G",
		creationTime: 1512552738, signatureSize: 1409,
	},
	{
		path: []string{"publications", "publications-nocerts.bin"}, certs: 0, pubs: 3,
		latestTime: 1213488000, latestString: "AAAAAA-CIKRNY-AAII76-VSASL4-7QGBDN-CRX7QS-DVLKMT-6KEU4P-Z327ZK-S55EGN-PA7CMX-YSWJTE",
		creationTime: 1438677648, signatureSize: 1397,
	},
	{
		// The signature is four zero bytes: libksi already fails to load
		// it (its loader parses the PKCS#7); structurally it is a file.
		path:    []string{"publications", "publications-contains-not-critical-unknown-element.bin"},
		unknown: 1, creationTime: 1400198400, signatureSize: 4,
	},
	{
		path: []string{"tlv", "ksi-publications.invalid-cert.validity.bin"}, certs: 16, pubs: 34,
		latestTime: 1494806400, latestString: "AAAAAA-CZDDXY-AANQKU-W4HT3V-YXSLEH-BULURE-46IMEV-CHAHMS-X3VUPS-AHC3ZA-JBV7R7-LDSAKI",
		creationTime: 1495110332, signatureSize: 1409,
	},
	{
		path: []string{"tlv", "ok-cert-3.pem-pubfile.bin"}, certs: 1, pubs: 1,
		latestTime: 1350259200, latestString: "AAAAAA-CQPNJA-AAJK36-H657MZ-AWADXK-M6JR77-JLERGT-UORVBU-5FZLTO-6D6YAU-UZZFF2-VQDGOV",
		creationTime: 1478700620, signatureSize: 3274,
	},
	{
		// Old libksi files carry the creation time in milliseconds.
		path: []string{"tlv", "publications.tlv"}, certs: 21, pubs: 77,
		latestTime: 1405382400, latestString: "AAAAAA-CTYRXQ-AAJHOZ-DFKQ26-PNX7QF-QMO6PD-BDIR3Z-7YYHSK-BIO7FW-ITUKRT-QVQOHO-X5NBRR",
		creationTime: 1416400746568, signatureSize: 1429,
	},
	{
		path: []string{"tlv", "publications.15042014.tlv"}, certs: 5, pubs: 74,
		latestTime: 1397520000, latestString: "AAAAAA-CTJR3I-AANBWU-RY76YF-7TH2M5-KGEZVA-WLLRGD-3GKYBG-AM5WWV-4MCLSP-XPRDDI-UFMHBA",
		creationTime: 1414510508908, signatureSize: 1503,
	},
	{
		// Bad PKI signature: a verifier failure, structurally fine.
		path: []string{"tlv", "publfile-nok-pki.tlv"}, certs: 10, pubs: 77,
		latestTime: 1405382400, latestString: "AAAAAA-CTYRXQ-AAJHOZ-DFKQ26-PNX7QF-QMO6PD-BDIR3Z-7YYHSK-BIO7FW-ITUKRT-QVQOHO-X5NBRR",
		creationTime: 1416400746568, signatureSize: 4077,
	},
	{
		path: []string{"tlv", "publications-one-cert-one-publication-record-with-wrong-hash.tlv"}, certs: 1, pubs: 1,
		latestTime: 1413331200, latestString: "AAAAAA-CUHW4Q-AAMXDG-C3WC5C-MHHFQZ-QS72X2-VBODRW-QTTSL6-DHVXNQ-YFBXYQ-2MPZP4-55XHJS",
		creationTime: 1426081838, signatureSize: 1552,
	},
}

func TestParsePublicationsFileTestData(t *testing.T) {
	for _, tc := range pubFileCases {
		t.Run(strings.Join(tc.path, "/"), func(t *testing.T) {
			b := testpack.Read(t, tc.path...)
			f, err := ParsePublicationsFile(b)
			if err != nil {
				t.Fatalf("ParsePublicationsFile: %v", err)
			}
			if len(f.Certificates) != tc.certs || len(f.Publications) != tc.pubs || len(f.Unknown) != tc.unknown {
				t.Errorf("certs/pubs/unknown = %d/%d/%d, want %d/%d/%d",
					len(f.Certificates), len(f.Publications), len(f.Unknown), tc.certs, tc.pubs, tc.unknown)
			}
			if f.Header.Version != 1 || f.Header.CreationTime != tc.creationTime {
				t.Errorf("header version %d creation %d, want 1 and %d", f.Header.Version, f.Header.CreationTime, tc.creationTime)
			}
			if len(f.Signature) != tc.signatureSize {
				t.Errorf("signature %d bytes, want %d", len(f.Signature), tc.signatureSize)
			}
			if !bytes.Equal(f.Raw, b) {
				t.Error("Raw is not the input")
			}

			l := f.Latest()
			switch {
			case tc.latestTime == 0 && l != nil:
				t.Errorf("Latest = %d, want none", l.Data.Time)
			case tc.latestTime != 0 && l == nil:
				t.Errorf("Latest = nil, want %d", tc.latestTime)
			case l != nil:
				if l.Data.Time != tc.latestTime || l.Data.String() != tc.latestString {
					t.Errorf("Latest = %d %s, want %d %s", l.Data.Time, l.Data, tc.latestTime, tc.latestString)
				}
				if l != f.Publications[len(f.Publications)-1] {
					t.Error("latest publication is not the last record")
				}
			}
			for i := 1; i < len(f.Publications); i++ {
				if f.Publications[i].Data.Time <= f.Publications[i-1].Data.Time {
					t.Errorf("record %d (time %d) not after record %d", i, f.Publications[i].Data.Time, i-1)
				}
			}
			for i := range f.Certificates {
				c := &f.Certificates[i]
				if len(c.ID) == 0 || len(c.DER) == 0 || c.DER[0] != 0x30 {
					t.Errorf("certificate %d: id %x, DER starts %x", i, c.ID, c.DER[:min(4, len(c.DER))])
				}
				if got := f.CertificateByID(c.ID); got != c {
					t.Errorf("CertificateByID(%x) does not find certificate %d", c.ID, i)
				}
			}
			if tc.firstCertID != "" && !bytes.Equal(f.Certificates[0].ID, mustHex(t, tc.firstCertID)) {
				t.Errorf("first certificate id %x, want %s", f.Certificates[0].ID, tc.firstCertID)
			}

			// The signed bytes are the file without its trailing 0x704
			// element, whose header is always four bytes.
			sigLen := 4 + len(f.Signature)
			signed := f.SignedBytes()
			if !bytes.Equal(signed, b[:len(b)-sigLen]) {
				t.Fatalf("SignedBytes is %d bytes, want the first %d of %d", len(signed), len(b)-sigLen, len(b))
			}
			tail := b[len(signed):]
			if tail[0] != 0x87 || tail[1] != 0x04 || int(tail[2])<<8|int(tail[3]) != len(f.Signature) {
				t.Errorf("bytes after SignedBytes start % x, want the 0x704 header", tail[:4])
			}

			if tc.unknown != 0 {
				return // the builder does not write top-level unknown elements
			}
			content, err := BuildPublicationsFileContent(f.Header, f.Certificates, f.Publications)
			if err != nil {
				t.Fatalf("BuildPublicationsFileContent: %v", err)
			}
			if !bytes.Equal(content, signed) {
				t.Errorf("built content differs from SignedBytes")
			}
			full, err := AppendPublicationsFileSignature(content, f.Signature)
			if err != nil {
				t.Fatalf("AppendPublicationsFileSignature: %v", err)
			}
			if !bytes.Equal(full, b) {
				t.Errorf("rebuilt file differs from the original")
			}
		})
	}
}

// Facts from libksi's ksi_publicationsfile_test.c about publications.tlv.
func TestPublicationsFileLookupsLibksi(t *testing.T) {
	f, err := ParsePublicationsFile(testpack.Read(t, "tlv", "publications.tlv"))
	if err != nil {
		t.Fatal(err)
	}
	r := f.PublicationAt(1397520000)
	if r == nil {
		t.Fatal("PublicationAt(1397520000) = nil")
	}
	if want := mustHex(t, "01a1b5238ffb05fccfa67546266a0b2d7130f6656026033b6b578c12e4fbbe231a"); !r.Data.Hash.Equal(want) {
		t.Errorf("hash %s, want %x", r.Data.Hash, want)
	}
	if !slices.Contains(r.References, "Financial Times, ISSN: 0307-1766, 2014-04-17") {
		t.Errorf("references %q lack the Financial Times entry", r.References)
	}
	if got := r.Data.String(); got != "AAAAAA-CTJR3I-AANBWU-RY76YF-7TH2M5-KGEZVA-WLLRGD-3GKYBG-AM5WWV-4MCLSP-XPRDDI-UFMHBA" {
		t.Errorf("publication string %s", got)
	}
	if r := f.PublicationAt(1397520001); r != nil {
		t.Errorf("PublicationAt(1397520001) = %d, want nil", r.Data.Time)
	}

	for _, tc := range []struct{ at, want uint64 }{
		{1289779234, 1292371200},
		{0, 1208217600},
		{1208217600, 1208217600}, // a publication at t itself is suitable
		{1208217601, f.Publications[1].Data.Time},
		{1405382400, 1405382400},
		{1405382401, 0},
		{2208217600, 0},
	} {
		r := f.FirstPublicationAfter(tc.at)
		var got uint64
		if r != nil {
			got = r.Data.Time
		}
		if got != tc.want {
			t.Errorf("FirstPublicationAfter(%d) = %d, want %d (0 = none)", tc.at, got, tc.want)
		}
	}
	if l := f.Latest(); l == nil || l.Data.Time != 1405382400 {
		t.Errorf("Latest = %v, want 1405382400", l)
	}
}

func TestParsePublicationsFileUnknownNonCritical(t *testing.T) {
	b := testpack.Read(t, "publications", "publications-contains-not-critical-unknown-element.bin")
	f, err := ParsePublicationsFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Unknown) != 1 || f.Unknown[0].Type != 0x02 || !f.Unknown[0].NonCritical {
		t.Fatalf("Unknown = %v, want one non-critical 0x02", f.Unknown)
	}
	if !bytes.Equal(f.Signature, []byte{0, 0, 0, 0}) {
		t.Errorf("Signature = %x", f.Signature)
	}
	// magic (8) + header (13) + unknown element (4) are signed.
	if got := len(f.SignedBytes()); got != 25 {
		t.Errorf("SignedBytes is %d bytes, want 25", got)
	}
}

// libksi testVerifyPublicationsFileAdditionalPublications: a record
// appended after the signature must not load.
func TestParsePublicationsFileTampered(t *testing.T) {
	_, err := ParsePublicationsFile(testpack.Read(t, "tlv", "publications-fake-publication.tlv"))
	if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "after the signature") {
		t.Fatalf("err = %v, want a format error about an element after the signature", err)
	}
}

// Every proper prefix of a real file is an error, never a panic or a
// shorter valid file.
func TestParsePublicationsFileTruncated(t *testing.T) {
	for _, p := range [][]string{
		{"tlv", "ksi-publications.bin"},
		{"publications", "publications-nocerts.bin"},
		{"publications", "publications-contains-not-critical-unknown-element.bin"},
	} {
		b := testpack.Read(t, p...)
		for n := range len(b) {
			if f, err := ParsePublicationsFile(b[:n]); err == nil {
				t.Fatalf("%s: prefix of %d bytes parsed (%d publications)", p[len(p)-1], n, len(f.Publications))
			} else if !errors.Is(err, ErrFormat) {
				t.Fatalf("%s: prefix of %d bytes: %v does not wrap ErrFormat", p[len(p)-1], n, err)
			}
		}
	}
}

// Helpers that build publications file pieces for synthetic cases.

func pfElem(t testing.TB, typ uint16, nonCritical bool, value []byte) []byte {
	t.Helper()
	b, err := tlv.Encode(typ, nonCritical, false, value)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func pfCat(parts ...[]byte) []byte { return slices.Concat(parts...) }

func pfHeader(t testing.TB, children ...[]byte) []byte {
	return pfElem(t, TypePubFileHeader, false, pfCat(children...))
}

func pfStdHeader(t testing.TB) []byte {
	return pfHeader(t, pfElem(t, tagPFVersion, false, []byte{1}), pfElem(t, tagPFCreated, false, []byte{0x5B, 0, 0, 0}))
}

func pfCert(t testing.TB, children ...[]byte) []byte {
	return pfElem(t, TypePubFileCert, false, pfCat(children...))
}

func pfStdCert(t testing.TB, id byte) []byte {
	return pfCert(t, pfElem(t, tagPFCertID, false, []byte{id, id, id, id}), pfElem(t, tagPFCertBody, false, []byte{0x30, 0x03, 0x02, 0x01, id}))
}

func pfRecord(t testing.TB, time uint64) *PublicationRecord {
	t.Helper()
	h, err := NewImprint(SHA2_256, bytes.Repeat([]byte{byte(time)}, 32))
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewPublicationRecord(TypePubFileRecord, NewPublishedData(time, h), []string{"ref"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func pfSig(t testing.TB) []byte { return pfElem(t, TypePubFileSignature, false, []byte{0x30, 0x00}) }

func pfFile(parts ...[]byte) []byte {
	return pfCat(append([][]byte{[]byte(PubFileMagic)}, parts...)...)
}

func TestParsePublicationsFileSynthetic(t *testing.T) {
	hdr, cert, sig := pfStdHeader(t), pfStdCert(t, 7), pfSig(t)
	pub, pub2 := pfRecord(t, 1000).Raw, pfRecord(t, 2000).Raw
	nonCrit := pfElem(t, 0x7FF, true, []byte("x"))
	crit := pfElem(t, 0x7FF, false, []byte("x"))

	ok := []struct {
		name              string
		in                []byte
		certs, pubs, unkn int
	}{
		{"minimal", pfFile(hdr, sig), 0, 0, 0},
		{"full", pfFile(hdr, cert, pfStdCert(t, 8), pub, pub2, sig), 2, 2, 0},
		{"non-critical unknown anywhere before signature", pfFile(hdr, nonCrit, cert, nonCrit, pub, nonCrit, sig), 1, 1, 3},
		{"empty signature value", pfFile(hdr, pfElem(t, TypePubFileSignature, false, nil)), 0, 0, 0},
		{"header with URI and non-critical child", pfFile(pfHeader(t,
			pfElem(t, tagPFVersion, false, []byte{1}), pfElem(t, tagPFCreated, false, nil),
			pfElem(t, tagPFRepoURI, false, []byte("http://x\x00")), pfElem(t, 0x1E, true, nil)), sig), 0, 0, 0},
		{"certificate with non-critical child", pfFile(hdr, pfCert(t,
			pfElem(t, tagPFCertID, false, []byte{1}), pfElem(t, tagPFCertBody, false, []byte{2}), pfElem(t, 0x1E, true, nil)), sig), 1, 0, 0},
	}
	for _, tc := range ok {
		t.Run(tc.name, func(t *testing.T) {
			f, err := ParsePublicationsFile(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if len(f.Certificates) != tc.certs || len(f.Publications) != tc.pubs || len(f.Unknown) != tc.unkn {
				t.Errorf("certs/pubs/unknown = %d/%d/%d, want %d/%d/%d",
					len(f.Certificates), len(f.Publications), len(f.Unknown), tc.certs, tc.pubs, tc.unkn)
			}
			// What follows the signed bytes is exactly the 0x704 element.
			e, err := tlv.ReadOne(tc.in[len(f.SignedBytes()):])
			if err != nil || e.Type != TypePubFileSignature || !bytes.Equal(e.Value, f.Signature) {
				t.Errorf("after SignedBytes: %v, %v; want the signature element", e, err)
			}
		})
	}

	bad := []struct {
		name, in, want string
	}{
		{"empty", "", "magic"},
		{"wrong magic", "KSIPUBLX" + string(hdr) + string(sig), "magic"},
		{"magic only", PubFileMagic, "no header"},
		{"no signature", string(pfFile(hdr, cert, pub)), "no signature"},
		{"header not first", string(pfFile(cert, hdr, sig)), "first element"},
		{"non-critical element before header", string(pfFile(nonCrit, hdr, sig)), "first element"},
		{"signature first", string(pfFile(sig)), "first element"},
		{"repeated header", string(pfFile(hdr, hdr, sig)), "repeated header"},
		{"certificate after publication", string(pfFile(hdr, pub, cert, sig)), "after a publication"},
		{"publication after signature", string(pfFile(hdr, sig, pub)), "after the signature"},
		{"two signatures", string(pfFile(hdr, sig, sig)), "after the signature"},
		{"non-critical after signature", string(pfFile(hdr, sig, nonCrit)), "after the signature"},
		{"unknown critical", string(pfFile(hdr, crit, sig)), "unknown critical element 0x7ff"},
		{"trailing garbage", string(pfFile(hdr, sig, []byte{0x01})), "truncated"},
		{"header not composite", string(pfFile(pfElem(t, TypePubFileHeader, false, []byte{0x01}), sig)), "header"},
		{"header without version", string(pfFile(pfHeader(t, pfElem(t, tagPFCreated, false, nil)), sig)), "version and creation time"},
		{"header without creation time", string(pfFile(pfHeader(t, pfElem(t, tagPFVersion, false, []byte{1})), sig)), "version and creation time"},
		{"header repeated version", string(pfFile(pfHeader(t, pfElem(t, tagPFVersion, false, []byte{1}), pfElem(t, tagPFVersion, false, []byte{1}), pfElem(t, tagPFCreated, false, nil)), sig)), "repeated version"},
		{"header 9-byte version", string(pfFile(pfHeader(t, pfElem(t, tagPFVersion, false, make([]byte, 9)), pfElem(t, tagPFCreated, false, nil)), sig)), "longer than 8"},
		{"header URI not zero-terminated", string(pfFile(pfHeader(t, pfElem(t, tagPFVersion, false, nil), pfElem(t, tagPFCreated, false, nil), pfElem(t, tagPFRepoURI, false, []byte("x"))), sig)), "zero-terminated"},
		{"header repeated URI", string(pfFile(pfHeader(t, pfElem(t, tagPFVersion, false, nil), pfElem(t, tagPFCreated, false, nil), pfElem(t, tagPFRepoURI, false, []byte{0}), pfElem(t, tagPFRepoURI, false, []byte{0})), sig)), "repeated repository URI"},
		{"header unknown critical child", string(pfFile(pfHeader(t, pfElem(t, tagPFVersion, false, nil), pfElem(t, tagPFCreated, false, nil), pfElem(t, 0x1E, false, nil)), sig)), "unknown critical element 0x1e"},
		{"certificate without id", string(pfFile(hdr, pfCert(t, pfElem(t, tagPFCertBody, false, []byte{1})), sig)), "certificate id and certificate"},
		{"certificate without body", string(pfFile(hdr, pfCert(t, pfElem(t, tagPFCertID, false, []byte{1})), sig)), "certificate id and certificate"},
		{"certificate repeated id", string(pfFile(hdr, pfCert(t, pfElem(t, tagPFCertID, false, []byte{1}), pfElem(t, tagPFCertID, false, []byte{1}), pfElem(t, tagPFCertBody, false, []byte{1})), sig)), "repeated certificate id"},
		{"certificate unknown critical child", string(pfFile(hdr, pfCert(t, pfElem(t, tagPFCertID, false, []byte{1}), pfElem(t, tagPFCertBody, false, []byte{1}), pfElem(t, 0x05, false, nil)), sig)), "unknown critical element 0x5"},
		{"empty publication record", string(pfFile(hdr, pfElem(t, TypePubFileRecord, false, nil), sig)), "published data is required"},
		{"publication record with bad imprint", string(pfFile(hdr, pfElem(t, TypePubFileRecord, false, pfElem(t, TypePublishedData, false,
			pfCat(pfElem(t, tagPubTime, false, nil), pfElem(t, tagPubHash, false, []byte{0x03, 1})))), sig)), "imprint"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			f, err := ParsePublicationsFile([]byte(tc.in))
			if err == nil {
				t.Fatalf("parsed: %d certs, %d publications", len(f.Certificates), len(f.Publications))
			}
			if !errors.Is(err, ErrFormat) {
				t.Errorf("%v does not wrap ErrFormat", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}

	t.Run("too large", func(t *testing.T) {
		big := make([]byte, MaxPublicationsFileSize+1)
		copy(big, PubFileMagic)
		if _, err := ParsePublicationsFile(big); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "at most") {
			t.Errorf("err = %v, want a size error", err)
		}
	})
}

func TestPublicationsFileBuilderFromFields(t *testing.T) {
	h := PublicationsFileHeader{Version: 1, CreationTime: 1700000000, RepositoryURI: "https://example.test/ksi-publications.bin"}
	certs := []CertificateRecord{
		{ID: []byte{1, 2, 3, 4}, DER: []byte{0x30, 0x01, 0x00}},
		{ID: []byte{5, 6, 7, 8}, DER: bytes.Repeat([]byte{0x30}, 300)}, // TLV16 child
	}
	// A signature-style 0x803 record converted with WithType.
	r803, err := NewPublicationRecord(TypePublicationRecord, pfRecord(t, 1600000000).Data, nil, []string{"https://repo"})
	if err != nil {
		t.Fatal(err)
	}
	r703, err := r803.WithType(TypePubFileRecord)
	if err != nil {
		t.Fatal(err)
	}
	pubs := []*PublicationRecord{pfRecord(t, 1500000000), r703, pfRecord(t, 1600000000+86400)}

	content, err := BuildPublicationsFileContent(h, certs, pubs)
	if err != nil {
		t.Fatal(err)
	}
	sig := bytes.Repeat([]byte{0xAB}, 3000)
	file, err := AppendPublicationsFileSignature(content, sig)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(file[:len(content)], content) || len(file) != len(content)+4+len(sig) {
		t.Fatal("AppendPublicationsFileSignature did not append one element")
	}

	f, err := ParsePublicationsFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if f.Header.Version != h.Version || f.Header.CreationTime != h.CreationTime || f.Header.RepositoryURI != h.RepositoryURI {
		t.Errorf("header %+v, want %+v", f.Header, h)
	}
	if len(f.Certificates) != 2 || !bytes.Equal(f.Certificates[1].ID, certs[1].ID) || !bytes.Equal(f.Certificates[1].DER, certs[1].DER) {
		t.Errorf("certificates do not round-trip")
	}
	if c := f.CertificateByID([]byte{0xCA, 0xFE, 0xBA, 0xBE}); c != nil {
		t.Errorf("CertificateByID found an absent id")
	}
	if len(f.Publications) != 3 || f.Publications[1].RepositoryURI[0] != "https://repo" {
		t.Errorf("publications do not round-trip")
	}
	for i, p := range f.Publications {
		if !bytes.Equal(p.Raw, pubs[i].Raw) {
			t.Errorf("publication %d re-encoded differently", i)
		}
	}
	if !bytes.Equal(f.SignedBytes(), content) || !bytes.Equal(f.Signature, sig) {
		t.Error("SignedBytes or Signature differ from what was built")
	}
	// Writers use minimal TLV8 headers for small children.
	if !bytes.HasPrefix(f.Header.Raw, []byte{0x87, 0x01}) || f.Header.Raw[4] != 0x01 || f.Header.Raw[5] != 0x01 {
		t.Errorf("header encoded as % x", f.Header.Raw[:8])
	}

	// Zero creation time and no URI: the URI element is left out.
	c2, err := BuildPublicationsFileContent(PublicationsFileHeader{Version: 1}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := pfFile(pfHeader(t, pfElem(t, tagPFVersion, false, []byte{1}), pfElem(t, tagPFCreated, false, nil))); !bytes.Equal(c2, want) {
		t.Errorf("content % x, want % x", c2, want)
	}
}

func TestPublicationsFileBuilderErrors(t *testing.T) {
	h := PublicationsFileHeader{Version: 1}
	rec803, err := NewPublicationRecord(TypePublicationRecord, pfRecord(t, 1).Data, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		h     PublicationsFileHeader
		certs []CertificateRecord
		pubs  []*PublicationRecord
		want  string
	}{
		{"header Raw of wrong type", PublicationsFileHeader{Raw: pfStdCert(t, 1)}, nil, nil, "header"},
		{"header Raw with trailing bytes", PublicationsFileHeader{Raw: pfCat(pfStdHeader(t), []byte{0})}, nil, nil, "trailing"},
		{"certificate Raw of wrong type", h, []CertificateRecord{{Raw: pfStdHeader(t)}}, nil, "certificate record 0"},
		{"certificate without id", h, []CertificateRecord{{DER: []byte{1}}}, nil, "empty id"},
		{"certificate without body", h, []CertificateRecord{{ID: []byte{1}}}, nil, "empty id"},
		{"nil publication", h, nil, []*PublicationRecord{nil}, "is nil"},
		{"publication without Raw", h, nil, []*PublicationRecord{{}}, "publication record 0"},
		{"0x803 publication", h, nil, []*PublicationRecord{rec803}, "want 0x703"},
		{"publications out of order", h, nil, []*PublicationRecord{pfRecord(t, 2), pfRecord(t, 1)}, "older"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := BuildPublicationsFileContent(tc.h, tc.certs, tc.pubs)
			if err == nil {
				t.Fatalf("built % x", b)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}

	content, err := BuildPublicationsFileContent(h, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name         string
		content, sig []byte
	}{
		{"no magic", content[1:], []byte{1}},
		{"empty signature", content, nil},
		{"signature too long", content, make([]byte, tlv.MaxValueLen+1)},
	} {
		if b, err := AppendPublicationsFileSignature(tc.content, tc.sig); err == nil {
			t.Errorf("%s: AppendPublicationsFileSignature = % x, want error", tc.name, b[:min(len(b), 16)])
		}
	}

	// The content slice is never written through, even with spare capacity.
	spare := append(make([]byte, 0, len(content)+64), content...)
	if _, err := AppendPublicationsFileSignature(spare, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if got := spare[:cap(spare)][len(content)]; got != 0 {
		t.Errorf("AppendPublicationsFileSignature wrote into the caller's spare capacity")
	}
}

// The lookups do not trust the file to be sorted.
func TestPublicationsFileLookupsUnsorted(t *testing.T) {
	a, b, c, c2 := pfRecord(t, 300), pfRecord(t, 100), pfRecord(t, 200), pfRecord(t, 200)
	f := &PublicationsFile{Publications: []*PublicationRecord{a, b, c, c2}}
	for _, tc := range []struct {
		at   uint64
		want *PublicationRecord
	}{
		{0, b}, {100, b}, {101, c}, {200, c}, {201, a}, {300, a}, {301, nil},
	} {
		if got := f.FirstPublicationAfter(tc.at); got != tc.want {
			t.Errorf("FirstPublicationAfter(%d) = %v, want %v", tc.at, got, tc.want)
		}
	}
	if got := f.PublicationAt(200); got != c {
		t.Errorf("PublicationAt(200) is not the first record with that time")
	}
	if got := f.PublicationAt(250); got != nil {
		t.Errorf("PublicationAt(250) = %v, want nil", got)
	}
	if got := f.Latest(); got != a {
		t.Errorf("Latest = %v, want the record at 300", got)
	}
	empty := &PublicationsFile{}
	if empty.Latest() != nil || empty.FirstPublicationAfter(0) != nil || empty.PublicationAt(0) != nil || empty.CertificateByID(nil) != nil {
		t.Error("lookups in an empty file found something")
	}
	if len(empty.SignedBytes()) != 0 {
		t.Error("SignedBytes of an empty file is not empty")
	}
}
