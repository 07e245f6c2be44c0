package client_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/tempel-ksi/tempel/client"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/verifier"
)

// exampleServer starts a Tempel server on loopback for the examples, with
// users (a users file, "" for development mode); a gateway uses its
// operator's endpoints instead.
func exampleServer(users string) (addr string, stop func()) {
	addr, _, stop = exampleServerDir(users)
	return addr, stop
}

// exampleServerDir is exampleServer that also returns the server's state
// folder, where its development PKI keeps the publications file's root
// certificate (data/keys/root.pem).
func exampleServerDir(users string) (addr, dir string, stop func()) {
	dir, err := os.MkdirTemp("", "tempel-client-example")
	if err != nil {
		log.Fatal(err)
	}
	addr, stopServer, err := serve(dir, users)
	if err != nil {
		log.Fatal(err)
	}
	return addr, dir, func() {
		if err := stopServer(); err != nil {
			log.Print(err)
		}
		os.RemoveAll(dir)
	}
}

// sha256Imprint is the imprint of a document, the form the server signs.
func sha256Imprint(doc string) ksi.Imprint {
	sum := sha256.Sum256([]byte(doc))
	h, err := ksi.NewImprint(ksi.SHA2_256, sum[:])
	if err != nil {
		log.Fatal(err)
	}
	return h
}

// A gateway signs a batch of documents with one request: each document
// gets its own signature, verifiable against its own hash.
func Example() {
	addr, stop := exampleServer("gw:secret\n")
	defer stop()

	c, err := client.New(client.Config{
		Endpoints: []string{addr},
		Login:     "gw",
		Key:       "secret",
		MachineID: "gateway-1",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	ctx := context.Background()
	docs := []string{"decision 1", "decision 2", "decision 3"}
	hashes := make([]ksi.Imprint, len(docs))
	for i, d := range docs {
		sum := sha256.Sum256([]byte(d))
		hashes[i], _ = ksi.NewImprint(ksi.SHA2_256, sum[:])
	}
	sigs, err := c.SignMany(ctx, hashes)
	if err != nil {
		log.Fatal(err)
	}
	for i, sig := range sigs {
		rep := verifier.Verify(ctx, sig, verifier.Internal, verifier.Options{Document: hashes[i]})
		fmt.Println(docs[i], rep.Result, sig.Identity())
	}
	// Output:
	// decision 1 OK [aggregator gw]
	// decision 2 OK [aggregator gw]
	// decision 3 OK [aggregator gw]
}

// In production the client speaks TLS to several endpoints. Each call
// goes to all of them at once and the first answer that passes the
// client's checks wins, so a hung or failing endpoint costs nothing while
// another answers; unavailable or overloaded endpoints are retried with
// backoff (Retries, RetryBackoff).
func ExampleNew_tls() {
	c, err := client.New(client.Config{
		Endpoints: []string{"https://tempel-a.example.ee:443", "https://tempel-b.example.ee:443"},
		Login:     "registry-gateway",
		Key:       os.Getenv("TEMPEL_KEY"),
		Timeout:   5 * time.Second,
		Retries:   2,
		// The system roots, at least TLS 1.3; RootCAs adds a private CA.
		TLS: &tls.Config{MinVersion: tls.VersionTLS13},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	// No connection is made until the first call.
	fmt.Println("ready")
	// Output: ready
}

// A load generator submits without waiting; answers arrive on the
// stream's reader goroutine.
func ExampleStream_Submit() {
	addr, stop := exampleServer("")
	defer stop()
	c, err := client.New(client.Config{Endpoints: []string{addr}, MaxOutstanding: 1000})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	s, err := c.Stream(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	answers := make(chan error, 100)
	for i := range 100 {
		sum := sha256.Sum256(fmt.Append(nil, "request ", i))
		h, _ := ksi.NewImprint(ksi.SHA2_256, sum[:])
		if err := s.Submit(h, func(sig []byte, err error) { answers <- err }); err != nil {
			log.Fatal(err)
		}
	}
	failed := 0
	for range 100 {
		if err := <-answers; err != nil {
			failed++
		}
	}
	if err := s.Close(); err != nil {
		log.Fatal(err)
	}
	fmt.Println("failed:", failed)
	// Output: failed: 0
}

// One document, one request: the signature comes back verified against
// the document's hash.
func ExampleClient_Sign() {
	addr, stop := exampleServer("")
	defer stop()
	c, err := client.New(client.Config{Endpoints: []string{addr}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	doc := sha256Imprint("decision 2026/17 of the land registry")
	sig, err := c.Sign(context.Background(), doc)
	if err != nil {
		log.Fatal(err)
	}
	b, err := sig.Encode() // the bytes of a .ksig file
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(sig.DocumentHash().Equal(doc), len(b) > 0, sig.Identity())
	// Output: true true [aggregator anonymous]
}

// Many documents, one request: each gets its own signature, all with the
// same signing time.
func ExampleClient_SignMany() {
	addr, stop := exampleServer("")
	defer stop()
	c, err := client.New(client.Config{Endpoints: []string{addr}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	hashes := make([]ksi.Imprint, 100)
	for i := range hashes {
		hashes[i] = sha256Imprint(fmt.Sprint("record ", i))
	}
	sigs, err := c.SignMany(context.Background(), hashes)
	if err != nil {
		log.Fatal(err)
	}
	same := true
	for i, sig := range sigs {
		same = same && sig.SigningTime() == sigs[0].SigningTime() && sig.DocumentHash().Equal(hashes[i])
	}
	fmt.Println(len(sigs), same)
	// Output: 100 true
}

// A stream serves many goroutines over one connection; each Sign waits
// for its own signature.
func ExampleClient_Stream() {
	addr, stop := exampleServer("")
	defer stop()
	c, err := client.New(client.Config{Endpoints: []string{addr}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	s, err := c.Stream(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	errs := make(chan error, 10)
	for i := range 10 {
		go func() {
			_, err := s.Sign(sha256Imprint(fmt.Sprint("form ", i)))
			errs <- err
		}()
	}
	failed := 0
	for range 10 {
		if err := <-errs; err != nil {
			failed++
		}
	}
	fmt.Println("failed:", failed)
	// Output: failed: 0
}

// Once a later calendar root is published, a signature is extended to it
// and then needs no key and no server: the publication string alone (from
// a newspaper, or any channel the verifier trusts) proves it.
func ExampleClient_Extend() {
	addr, stop := exampleServer("")
	defer stop()
	c, err := client.New(client.Config{Endpoints: []string{addr}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()

	doc := sha256Imprint("building permit 4711")
	sig, err := c.Sign(ctx, doc)
	if err != nil {
		log.Fatal(err)
	}
	// This example publishes the calendar's newest root itself; a
	// gateway takes a publication from the verified publications file
	// (Client.Publications) once it has one after the signing time.
	var head *client.CalendarHead
	for head == nil || head.Last <= sig.SigningTime() {
		time.Sleep(50 * time.Millisecond)
		if head, err = c.CalendarHead(ctx); err != nil {
			log.Fatal(err)
		}
	}
	rec, err := ksi.NewPublicationRecord(ksi.TypePublicationRecord, ksi.NewPublishedData(head.Last, head.Root), nil, nil)
	if err != nil {
		log.Fatal(err)
	}
	ext, err := c.Extend(ctx, sig, rec)
	if err != nil {
		log.Fatal(err)
	}

	// The verifier's side: the publication string and the signature.
	pubString := rec.Data.String()
	pub, err := ksi.ParsePublicationString(pubString)
	if err != nil {
		log.Fatal(err)
	}
	rep := verifier.Verify(ctx, ext, verifier.UserPublicationBased, verifier.Options{Document: doc, UserPublication: &pub})
	fmt.Println(ext.IsExtended(), rep.Result)
	// Output: true OK
}

// Publications fetches the publications file, verifies it against the
// configured trust and caches it; the default policy then verifies a
// fresh signature by its calendar key, found in the file.
func ExampleClient_Publications() {
	addr, dir, stop := exampleServerDir("")
	defer stop()
	// The development server's root; a gateway pins its operator's.
	certs, err := verifier.LoadCertificates(filepath.Join(dir, "data", "keys", "root.pem"))
	if err != nil {
		log.Fatal(err)
	}
	roots := x509.NewCertPool()
	for _, cert := range certs {
		roots.AddCert(cert)
	}
	signer, err := verifier.ParseConstraint("E=publications@tempel.test")
	if err != nil {
		log.Fatal(err)
	}
	c, err := client.New(client.Config{
		Endpoints: []string{addr},
		PublicationsTrust: client.PublicationsTrust{
			Roots:       roots,
			Constraints: []verifier.Constraint{signer},
			Refresh:     time.Hour, // the default
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()

	pf, err := c.Publications(ctx)
	if err != nil {
		log.Fatal(err)
	}
	doc := sha256Imprint("birth certificate 12345")
	sig, err := c.Sign(ctx, doc)
	if err != nil {
		log.Fatal(err)
	}
	rep := verifier.Verify(ctx, sig, verifier.Default, verifier.Options{Document: doc, PublicationsFile: pf})
	fmt.Println(rep.Result)
	// Output: OK
}
