package tsp_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/calendartree"
	"github.com/tempel-ksi/tempel/ksi/round"
	"github.com/tempel-ksi/tempel/tsp"
)

// testTSA is a root CA and a TSA certificate it issued.
type testTSA struct {
	root   *x509.Certificate
	signer *tsp.Signer
}

var keyCache = map[string]crypto.Signer{}

func testKey(t testing.TB, kind string) crypto.Signer {
	t.Helper()
	if k, ok := keyCache[kind]; ok {
		return k
	}
	var k crypto.Signer
	var err error
	switch kind {
	case "rsa":
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ecdsa":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "root":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	keyCache[kind] = k
	return k
}

// newTSA makes a root and a TSA certificate (EKU timeStamping, critical)
// for a key of kind "rsa" or "ecdsa".
func newTSA(t testing.TB, kind string) *testTSA {
	t.Helper()
	rootKey := testKey(t, "root")
	now := time.Now()
	rootTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tsp test root"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := x509.ParseCertificate(rootDER)
	key := testKey(t, kind)
	eku, _ := asn1.Marshal([]asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 8}})
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "tsp test TSA " + kind},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 37}, Critical: true, Value: eku}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root, key.Public(), rootKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testTSA{root: root, signer: &tsp.Signer{Key: key, Cert: cert}}
}

func (a *testTSA) writeRoot(t testing.TB, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "root.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.root.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// ksiSign signs doc at second sec with the repository's own round code:
// an aggregation round of doc and a few other leaves, its root the leaf of
// second sec in a calendar that starts there, with a publication record
// on the calendar root, so that the signature verifies internally.
func ksiSign(t testing.TB, doc ksi.Imprint, sec uint64) *ksi.Signature {
	t.Helper()
	seq := uint64(1)
	meta, err := ksi.AppendMetadataValue(nil, ksi.MetadataFields{ClientID: "tsa", SequenceNumber: &seq})
	if err != nil {
		t.Fatal(err)
	}
	reqs := []round.Request{{Hash: doc, Meta: meta}}
	for i := range 4 {
		other, _ := ksi.SHA2_256.Digest([]byte{byte(i)})
		reqs = append(reqs, round.Request{Hash: other})
	}
	r, err := round.Build(ksi.SHA2_256, reqs)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := r.Root()
	state, nodes, err := calendartree.Append(calendartree.State{}, sec, []ksi.Imprint{root})
	if err != nil {
		t.Fatal(err)
	}
	cal, err := state.Chain(nodeMap(nodes), sec, sec)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ksi.NewPublicationRecord(ksi.TypePublicationRecord, ksi.NewPublishedData(sec, state.Root()), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ans := &round.Answer{AggregationTime: sec, Elements: append(append([]byte{}, cal.Raw...), pub.Raw...)}
	var w round.Writer
	b, err := w.AppendSignature(nil, r, 0, ans)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := ksi.ParseSignature(b)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

type nodeMap []calendartree.Node

func (m nodeMap) ReadNodes(ids []calendartree.NodeID, hashes []ksi.Imprint) error {
	for i, id := range ids {
		for _, n := range m {
			if n.ID == id {
				hashes[i] = n.Hash
			}
		}
		if hashes[i] == nil {
			return calendartree.ErrBadNode
		}
	}
	return nil
}

// issue runs a request through the whole pipeline and returns the
// response and the draft.
func issue(t testing.TB, s *tsp.Signer, reqDER []byte, genTime time.Time) ([]byte, *tsp.Draft) {
	t.Helper()
	req, err := tsp.ParseRequest(reqDER)
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.Draft(req, big.NewInt(time.Now().UnixNano()), genTime)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := d.Sign()
	if err != nil {
		t.Fatal(err)
	}
	ksig := ksiSign(t, d.Document(), uint64(genTime.Unix()))
	tok, err := d.Token(sig, ksig)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := d.Response(sig, ksig)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(resp, tsp.Granted(tok)) {
		t.Fatal("Response differs from Granted(Token)")
	}
	return resp, d
}

func writePEM(t testing.TB, path string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}

// extendSig extends a signature from ksiSign to a publication n seconds
// later: the same calendar (its leaf is the signature's calendar chain
// input), n more seconds appended, the chain to the new root and a
// publication record on it.
func extendSig(t testing.TB, sig *ksi.Signature, n uint64) (*ksi.Signature, ksi.PublishedData) {
	t.Helper()
	sec := sig.SigningTime()
	state, nodes, err := calendartree.Append(calendartree.State{}, sec, []ksi.Imprint{sig.CalendarChain.InputHash})
	if err != nil {
		t.Fatal(err)
	}
	more := make([]ksi.Imprint, n)
	for i := range more {
		more[i], _ = ksi.SHA2_256.Digest([]byte{byte(i), 'x'})
	}
	state, nodes2, err := calendartree.Append(state, sec+1, more)
	if err != nil {
		t.Fatal(err)
	}
	cal, err := state.Chain(append(nodeMap(nodes), nodes2...), sec, sec+n)
	if err != nil {
		t.Fatal(err)
	}
	pd := ksi.NewPublishedData(sec+n, state.Root())
	pub, err := ksi.NewPublicationRecord(ksi.TypePublicationRecord, pd, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ext, err := sig.Extend(cal, pub)
	if err != nil {
		t.Fatal(err)
	}
	return ext, pd
}
