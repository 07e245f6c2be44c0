package client_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/tempel-ksi/tempel/client"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/verifier"
)

// exampleServer starts a Tempel server on loopback for the examples, with
// users (a users file, "" for development mode); a gateway uses its
// operator's endpoints instead.
func exampleServer(users string) (addr string, stop func()) {
	dir, err := os.MkdirTemp("", "tempel-client-example")
	if err != nil {
		log.Fatal(err)
	}
	addr, stopServer, err := serve(dir, users)
	if err != nil {
		log.Fatal(err)
	}
	return addr, func() {
		if err := stopServer(); err != nil {
			log.Print(err)
		}
		os.RemoveAll(dir)
	}
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

// In production the client speaks TLS to several endpoints; a call moves
// to the next endpoint when one is unavailable.
func ExampleNew_tls() {
	c, err := client.New(client.Config{
		Endpoints: []string{"https://tempel-a.example.ee:443", "https://tempel-b.example.ee:443"},
		Login:     "registry-gateway",
		Key:       os.Getenv("TEMPEL_KEY"),
		Timeout:   5 * time.Second,
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
