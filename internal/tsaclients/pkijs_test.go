package tsaclients

import (
	"path/filepath"
	"testing"
)

// pkijs asks with a negative nonce and certReq, checks that the nonce
// comes back byte for byte, that the imprint is the document's, and that
// the signature verifies with a chain to the TSA root and not without it
// (testdata/pkijs_client.mjs). The response verifies keylessly.
func TestPKIjs(t *testing.T) {
	s := tsaServer(t)
	dir := t.TempDir()
	doc := filepath.Join(dir, "invoice.xml")
	write(t, doc, []byte("<invoice number=\"2026-117\"/>\n"))
	tsr := filepath.Join(dir, "r.tsr")
	out := runNode(t, "pkijs_client.mjs", s.tsaURL(), s.rootPEM(), doc, tsr)
	t.Logf("pkijs: %s", out)
	tok := checkToken(t, s, read(t, tsr))
	if len(tok.Nonce) == 0 || tok.Nonce[0]&0x80 == 0 {
		t.Fatalf("the token's nonce %x is not the negative one pkijs sent", tok.Nonce)
	}
	keyless(t, s, tok)
}
