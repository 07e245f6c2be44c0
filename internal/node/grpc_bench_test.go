package node

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	tempelv1 "github.com/tempel-ksi/tempel/proto/tempel/v1"
)

// The gRPC signing paths, unary and batch stream, on a real node on
// loopback (benchNode): benchHashes hashes per iteration. Client and
// server run in the process, so allocs/op count both sides; compare them
// between builds, not with other figures.
//
//	go test ./internal/node -run '^$' -bench 'GRPC' -benchmem
func BenchmarkGRPCSign1000(b *testing.B) {
	_, addr := benchNode(b)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	c := tempelv1.NewSignerClient(conn)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		var wg sync.WaitGroup
		errs := make(chan error, benchHashes)
		for k := range benchHashes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := c.Sign(context.Background(), &tempelv1.SignRequest{Hash: docHash(fmt.Sprint(i, k))})
				if err == nil && len(r.Signature) == 0 {
					err = fmt.Errorf("no signature")
				}
				if err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(benchHashes*b.N)/b.Elapsed().Seconds(), "hashes/s")
}

func BenchmarkGRPCSignBatchStream1000(b *testing.B) {
	_, addr := benchNode(b)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := tempelv1.NewSignerClient(conn).SignBatchStream(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		batch := &tempelv1.SignBatch{Requests: make([]*tempelv1.SignRequest, benchHashes)}
		for k := range batch.Requests {
			batch.Requests[k] = &tempelv1.SignRequest{RequestId: uint64(k + 1), Hash: docHash(fmt.Sprint(i, k))}
		}
		if err := s.Send(batch); err != nil {
			b.Fatal(err)
		}
		for got := 0; got < benchHashes; {
			resp, err := s.Recv()
			if err != nil {
				b.Fatal(err)
			}
			for _, r := range resp.Responses {
				if r.Status != 0 || len(r.Signature) == 0 {
					b.Fatalf("request %d: status %#x %s", r.RequestId, r.Status, r.ErrorMessage)
				}
			}
			got += len(resp.Responses)
		}
	}
	b.ReportMetric(float64(benchHashes*b.N)/b.Elapsed().Seconds(), "hashes/s")
}
