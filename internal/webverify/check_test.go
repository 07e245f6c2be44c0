package webverify

import (
	"context"
	"crypto/sha512"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/internal/pki"
	"github.com/tempel-ksi/tempel/internal/testpack"
	"github.com/tempel-ksi/tempel/ksi"
)

// extendedPubStr is the publication that tlv/ok-sig-2014-04-30.1-extended.ksig
// is extended to (MANIFEST.md).
// plainPubStr is the calendar output of tlv/ok-sig-2014-04-30.1.ksig, a
// publication of the very second that signature was made.
const plainPubStr = "AAAAAA-CTMGHI-AAOELJ-GXHAK4-X3GVJE-YZOUJ2-NQWJAW-FQWFVZ-TJSIAU-3IU4MG-2UUORM-OOVBCT"

const extendedPubStr = "AAAAAA-CTOQBY-AAMJYH-XZPM6T-UO6U6V-2WJMHQ-EJMVXR-JEAGID-2OY7P5-XFFKYI-QIF2LG-YOV7SO"

func TestCheck(t *testing.T) {
	laptop := testpack.Read(t, "documents", "LAPTOP.txt")
	ext := testpack.Read(t, "tlv", "ok-sig-2014-04-30.1-extended.ksig")
	plain := testpack.Read(t, "tlv", "ok-sig-2014-04-30.1.ksig")
	broken := append([]byte{}, ext...)
	broken[len(broken)/2] ^= 0x01
	root, err := pki.Init(t.TempDir(), pki.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		in     Input
		status string
		want   string // in Reason or CheckedAgainst
	}{
		{"publication string", Input{Document: laptop, Signature: ext, PubStr: extendedPubStr}, Verified, "the publication string you gave"},
		{"pasted with spaces", Input{Document: laptop, Signature: ext, PubStr: "  " + extendedPubStr + "\n"}, Verified, "publication string"},
		{"other document", Input{Document: []byte("LAPTOP!"), Signature: ext, PubStr: extendedPubStr}, Failed, "not the one that was signed"},
		{"changed signature", Input{Document: laptop, Signature: broken, PubStr: extendedPubStr}, Failed, "damaged or was changed"},
		{"another publication", Input{Document: laptop, Signature: ext, PubStr: plainPubStr}, Inconclusive, "not yet extended"},
		{"no anchor", Input{Document: laptop, Signature: plain}, Inconclusive, "nothing to check it against"},
		{"not extended", Input{Document: laptop, Signature: plain, PubStr: extendedPubStr}, Inconclusive, "not yet extended"},
		{"bad publication string", Input{Document: laptop, Signature: ext, PubStr: "AAAAAA-BROKEN"}, Inconclusive, "publication string is not valid"},
		{"no signature", Input{Document: laptop}, Inconclusive, "no signature"},
		{"no document", Input{Signature: ext, PubStr: extendedPubStr}, Inconclusive, "no document"},
		{"empty document", Input{Document: []byte{}, Signature: ext, PubStr: extendedPubStr}, Failed, "not the one that was signed"},
		{"garbage signature", Input{Document: laptop, Signature: []byte("hello")}, Failed, "damaged"},
		{"an ASiC-S container as the signature", Input{Document: laptop, Signature: []byte("PK\x03\x04mimetype")}, Inconclusive, "check it with tempel verify"},
		{"a PDF as the signature", Input{Document: laptop, Signature: []byte("%PDF-1.7\n")}, Inconclusive, "check it with tempel verify"},
		{"garbage token", Input{Document: laptop, Signature: []byte{0x30, 0x03, 0x02}}, Failed, "damaged"},
		{"pubfile without root", Input{Document: laptop, Signature: plain, Pubfile: testpack.Read(t, "tlv", "ksi-publications.bin")}, Inconclusive, "without a root"},
		{"pubfile of another root", Input{Document: laptop, Signature: plain, Pubfile: testpack.Read(t, "tlv", "ksi-publications.bin"),
			Root: root.RootPEM(), Constraints: []string{root.Constraint()}, Now: time.Now()}, Inconclusive, "could not be trusted"},
		{"the signature as the document", Input{Document: ext, Signature: ext, PubStr: extendedPubStr}, Failed, "the file chosen as the document is itself a signature"},
		{"another signature as the document", Input{Document: plain, Signature: ext, PubStr: extendedPubStr}, Failed, "is itself a signature"},
		{"too large document", Input{Document: make([]byte, MaxDocumentBytes+1), Signature: ext, PubStr: extendedPubStr}, Inconclusive, "larger"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := Check(context.Background(), c.in)
			if r.Status != c.status || !strings.Contains(r.Reason+r.CheckedAgainst, c.want) {
				t.Fatalf("got %+v, want %s with %q", r, c.status, c.want)
			}
			if hint := "itself a signature"; strings.Contains(r.Reason, hint) != strings.Contains(c.want, hint) {
				t.Errorf("reason %q: the hint %q is wrongly given or missing", r.Reason, hint)
			}
			checkPlain(t, r)
			if r.Status == Verified && (r.SigningTime != "2014-04-30T13:57:36Z" || r.Identity != "GT :: testA") {
				t.Errorf("signing time %q, identity %q", r.SigningTime, r.Identity)
			}
		})
	}
}

// TestDocumentHasher checks the page's way of reading a document: in
// pieces, into a hasher made for the signature, its imprint handed to
// Check in place of the bytes.
func TestDocumentHasher(t *testing.T) {
	laptop := testpack.Read(t, "documents", "LAPTOP.txt")
	ext := testpack.Read(t, "tlv", "ok-sig-2014-04-30.1-extended.ksig")
	heads := map[string][]byte{} // Head of each imprint's hasher
	hashed := func(doc []byte, piece int) ksi.Imprint {
		t.Helper()
		d, res := NewDocumentHasher(ext)
		if res != nil {
			t.Fatalf("NewDocumentHasher: %+v", res)
		}
		for len(doc) > 0 {
			n := min(piece, len(doc))
			d.Write(doc[:n])
			doc = doc[n:]
		}
		heads[d.Imprint().String()] = d.Head()
		return d.Imprint()
	}
	sha512 := sha512.Sum512(laptop)
	other, err := ksi.NewImprint(ksi.SHA2_512, sha512[:])
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		imp    ksi.Imprint
		status string
		want   string
	}{
		{"in pieces", hashed(laptop, 3), Verified, "the publication string you gave"},
		{"in one piece", hashed(laptop, len(laptop)), Verified, "the publication string you gave"},
		{"changed document", hashed(append(append([]byte{}, laptop...), '!'), 5), Failed, "not the one that was signed"},
		{"the signature as the document", hashed(ext, 7), Failed, "is itself a signature"},
		{"another algorithm", other, Inconclusive, "hashed with SHA-512"},
		{"not an imprint", ksi.Imprint{0x7f, 1, 2}, Inconclusive, "choose the files again"},
	} {

		t.Run(c.name, func(t *testing.T) {
			r := Check(context.Background(), Input{DocumentHash: c.imp, DocumentHead: heads[c.imp.String()], Signature: ext, PubStr: extendedPubStr})
			if r.Status != c.status || !strings.Contains(r.Reason+r.CheckedAgainst, c.want) {
				t.Fatalf("got %+v, want %s with %q", r, c.status, c.want)
			}
			if hint := "itself a signature"; strings.Contains(r.Reason, hint) != strings.Contains(c.want, hint) {
				t.Errorf("reason %q: the hint %q is wrongly given or missing", r.Reason, hint)
			}
		})
	}
	for _, c := range []struct {
		name   string
		sig    []byte
		status string
		want   string
	}{
		{"no signature", nil, Inconclusive, "no signature"},
		{"garbage signature", []byte("hello"), Failed, "damaged"},
		{"too large", make([]byte, MaxSignatureSize+1), Failed, "too large"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, res := NewDocumentHasher(c.sig)
			if d != nil || res == nil || res.Status != c.status || !strings.Contains(res.Reason, c.want) {
				t.Fatalf("got %v, %+v; want %s with %q", d, res, c.status, c.want)
			}
		})
	}
}

// hexRun is a hash as the verifier prints one.
var hexRun = regexp.MustCompile(`[0-9A-Fa-f]{32}`)

// checkPlain checks that an answer the verifier decided is told in plain
// words (no hashes, no verifier phrases), its own words kept in Detail.
func checkPlain(t *testing.T, r Result) {
	t.Helper()
	if hexRun.MatchString(r.Reason) || strings.Contains(r.Reason, "hash chain") || strings.Contains(r.Reason, "Verification inconclusive") {
		t.Errorf("reason %q is not in plain words", r.Reason)
	}
	if r.Code != "" && !strings.HasPrefix(r.Detail, r.Code+": ") {
		t.Errorf("detail %q does not give the verifier's code %s and words", r.Detail, r.Code)
	}
}
