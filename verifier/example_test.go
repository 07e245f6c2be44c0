package verifier_test

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/verifier"
)

// The examples read the reference conformance pack in place
// (../shared/testdata/ksi beside the repository, or TEMPEL_KSI_TESTDATA).
func packFile(elem ...string) string {
	root := os.Getenv("TEMPEL_KSI_TESTDATA")
	if root == "" {
		root = filepath.Join("..", "..", "shared", "testdata", "ksi")
	}
	return filepath.Join(append([]string{root}, elem...)...)
}

// documentHash is the SHA-256 imprint of a file, the form a signature
// carries.
func documentHash(path string) ksi.Imprint {
	b, err := os.ReadFile(path)
	if err != nil {
		log.Fatal(err)
	}
	sum := sha256.Sum256(b)
	h, err := ksi.NewImprint(ksi.SHA2_256, sum[:])
	if err != nil {
		log.Fatal(err)
	}
	return h
}

func readSignature(path string) *ksi.Signature {
	b, err := os.ReadFile(path)
	if err != nil {
		log.Fatal(err)
	}
	sig, err := ksi.ParseSignature(b)
	if err != nil {
		log.Fatal(err)
	}
	return sig
}

// A citizen verifies a document against its signature and a publications
// file: first the file itself (its PKCS#7 signature, the signer's chain to
// a trusted root and the signer's e-mail address), then the signature
// against a publication in it. Nothing goes over the network.
func ExampleVerifyPublicationsFile() {
	b, err := os.ReadFile(packFile("test_pack", "policy-verification-signatures", "resources", "publications-file-resigned.bin"))
	if err != nil {
		log.Fatal(err)
	}
	pf, err := ksi.ParsePublicationsFile(b)
	if err != nil {
		log.Fatal(err)
	}
	certs, err := verifier.LoadCertificates(packFile("test_pack", "policy-verification-signatures", "resources", "cert-file-for-deprecated-algorithm-in-calendar-chain.pem"))
	if err != nil {
		log.Fatal(err)
	}
	roots := x509.NewCertPool()
	for _, c := range certs {
		roots.AddCert(c)
	}
	signer, err := verifier.ParseConstraint("E=publications@guardtime.com")
	if err != nil {
		log.Fatal(err)
	}
	// A live file is checked at the current time; this test CA has
	// expired since, so the file is checked when it was made.
	at := time.Unix(int64(pf.Header.CreationTime), 0)
	if err := verifier.VerifyPublicationsFile(pf, verifier.Trust{Roots: roots, Constraints: []verifier.Constraint{signer}, Time: at}); err != nil {
		log.Fatal(err)
	}

	doc := documentHash(packFile("documents", "test-data-file.txt"))
	sig := readSignature(packFile("test_pack", "valid-signatures", "rfc3161-signature-extended-for-publication-file-based-verification.ksig"))
	rep := verifier.Verify(context.Background(), sig, verifier.PublicationsFileBased, verifier.Options{Document: doc, PublicationsFile: pf})
	fmt.Println(rep.Result, sig.PublicationRecord.Data.String())

	// Another document does not verify.
	other := documentHash(packFile("documents", "LAPTOP.txt"))
	rep = verifier.Verify(context.Background(), sig, verifier.PublicationsFileBased, verifier.Options{Document: other, PublicationsFile: pf})
	fmt.Println(rep.Result, rep.Code)
	// Output:
	// OK AAAAAA-DF6OHY-AAMWLC-WDLI7J-V6IP4V-JYT32Y-PFSQ54-KPUL3V-JCHMEN-VGPL3R-AQYKHA-54JPLO
	// FAIL GEN-01
}

// Without a publications file, a publication string printed in a
// newspaper (or received by any channel the verifier trusts) proves a
// signature extended to that publication.
func ExampleVerify_publicationString() {
	pub, err := ksi.ParsePublicationString("AAAAAA-DF6NWU-2ANERL-ZQKP5E-WEEQEF-JT76EI-HLTKXG-FQKRZC-ZJJV4E-LAJNHZ-2WY22Z-C3V2JA")
	if err != nil {
		log.Fatal(err)
	}
	doc := documentHash(packFile("documents", "LAPTOP.txt"))
	sig := readSignature(packFile("test_pack", "valid-signatures", "signature-extended.ksig"))
	rep := verifier.Verify(context.Background(), sig, verifier.UserPublicationBased, verifier.Options{Document: doc, UserPublication: &pub})
	fmt.Println(rep.Result, time.Unix(int64(pub.Time), 0).UTC().Format(time.RFC3339))
	// Output: OK 2024-03-14T21:34:05Z
}

// The internal policy checks a signature in itself, with no trust anchor:
// what a server's answer must pass before anyone stores it.
func ExampleVerify_internal() {
	doc := documentHash(packFile("documents", "LAPTOP.txt"))
	sig := readSignature(packFile("test_pack", "valid-signatures", "signature-extended.ksig"))
	rep := verifier.Verify(context.Background(), sig, verifier.Internal, verifier.Options{Document: doc})
	fmt.Println(rep.Result, sig.SigningUTC().Format(time.RFC3339))
	// Output: OK 2024-03-14T21:34:00Z
}
