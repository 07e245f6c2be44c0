package client_test

import (
	"context"
	"crypto/sha512"
	"fmt"
	"log"

	"github.com/tempel-ksi/tempel/client"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/verifier"
)

// A registry signs each night's records in one batch, blinded (the
// default), and chains every night to the one before with the last
// masked leaf, as ksi-tool's --prev-leaf does. The records' hashes may be
// of any algorithm that is not deprecated; here SHA-512.
func ExampleClient_SignManyEncoded() {
	addr, stop := exampleServer("")
	defer stop()
	c, err := client.New(client.Config{Endpoints: []string{addr}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()

	var last ksi.Imprint // nil: the first night starts from the zero leaf
	for night, records := range [][]string{{"record 1", "record 2", "record 3"}, {"record 4", "record 5"}} {
		hashes := make([]ksi.Imprint, len(records))
		for i, r := range records {
			sum := sha512.Sum512([]byte(r))
			hashes[i], _ = ksi.NewImprint(ksi.SHA2_512, sum[:])
		}
		res, err := c.SignManyEncoded(ctx, hashes, client.SignManyOptions{PreviousLeaf: last})
		if err != nil {
			log.Fatal(err)
		}
		last = res.LastLeaf // keep it (with the signatures) for the next night
		ok := 0
		for i, b := range res.Signatures {
			sig, err := ksi.ParseSignature(b) // b is what a .ksig file holds
			if err != nil {
				log.Fatal(err)
			}
			if verifier.Verify(ctx, sig, verifier.Internal, verifier.Options{Document: hashes[i]}).Result == verifier.OK {
				ok++
			}
		}
		fmt.Printf("night %d: %d of %d signatures verify, %d request\n", night+1, ok, len(records), res.Requests)
	}
	// Output:
	// night 1: 3 of 3 signatures verify, 1 request
	// night 2: 2 of 2 signatures verify, 1 request
}
