package node

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/internal/server"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/pdu"
)

// The ksi+tcp figure: 1,000 hashes signed as 1,000 one-request PDUs,
// the way libksi's asynchronous service sends them, pipelined on one
// ksi+tcp connection, next to the same PDUs POSTed over HTTP/1.1
// keep-alive by benchHTTPConns concurrent clients. A real node on
// loopback with the default round (100 ms); each reports hashes/s.
//
//	go test ./internal/node -run '^$' -bench 'Sign1000$' -count 3
const (
	benchHashes    = 1000
	benchHTTPConns = 64
)

// benchNode starts a node with a ksi+tcp listener for b.
func benchNode(b *testing.B) (n *Node, httpAddr string) {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	n, err = New(Config{Role: RoleAll, DataDir: b.TempDir(), Logger: quiet(), RoundPeriod: 100 * time.Millisecond,
		KSITCPListen: "127.0.0.1:0", PublicURL: "http://" + ln.Addr().String()})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx, ln) }()
	b.Cleanup(func() { cancel(); <-done; n.Close() })
	for deadline := time.Now().Add(10 * time.Second); n.ready() != nil; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatal("the node is not ready after 10 s")
		}
	}
	return n, ln.Addr().String()
}

// benchPDUs are benchHashes one-request signing PDUs, ids 1..benchHashes.
func benchPDUs(b *testing.B, round int) [][]byte {
	out := make([][]byte, benchHashes)
	for i := range out {
		req := &pdu.AggregatorRequest{Envelope: pdu.Envelope{Header: pdu.Header{LoginID: "anon"}},
			Requests: []pdu.AggregationRequest{{RequestID: uint64(i + 1), Hash: docHash(fmt.Sprint("bench ", round, " ", i))}}}
		raw, err := req.Encode(ksi.SHA2_256, []byte("anon"))
		if err != nil {
			b.Fatal(err)
		}
		out[i] = raw
	}
	return out
}

// checkSigned says what is wrong unless resp signs a request id
// (1..benchHashes) not answered before.
func checkSigned(resp []byte, seen []bool) error {
	r, err := pdu.ParseAggregatorResponse(resp)
	if err != nil || len(r.Responses) != 1 || r.Responses[0].Status != 0 || len(r.Responses[0].SignatureElements) == 0 {
		return fmt.Errorf("response %v %+v", err, r)
	}
	id := r.Responses[0].RequestID
	if id < 1 || id > benchHashes || seen[id-1] {
		return fmt.Errorf("request id %d answered twice or never asked", id)
	}
	seen[id-1] = true
	return nil
}

func BenchmarkKSITCPSign1000(b *testing.B) {
	n, _ := benchNode(b)
	c, err := net.Dial("tcp", n.KSITCPAddr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReaderSize(c, 64<<10)
	accept := func(typ uint16, tlv16 bool) bool { return tlv16 && typ == pdu.TypeAggregatorResponse }
	var total time.Duration
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		pdus := benchPDUs(b, i)
		stream := bytes.Join(pdus, nil)
		seen := make([]bool, benchHashes)
		b.StartTimer()
		start := time.Now()
		werr := make(chan error, 1)
		go func() { _, err := c.Write(stream); werr <- err }()
		for range benchHashes {
			resp, _, err := server.ReadKSIFrame(br, accept, nil)
			if err != nil {
				b.Fatal(err)
			}
			if err := checkSigned(resp, seen); err != nil {
				b.Fatal(err)
			}
		}
		total += time.Since(start)
		if err := <-werr; err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(benchHashes*b.N)/total.Seconds(), "hashes/s")
}

func BenchmarkHTTPPDUSign1000(b *testing.B) {
	_, addr := benchNode(b)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: benchHTTPConns, MaxConnsPerHost: benchHTTPConns}}
	defer hc.CloseIdleConnections()
	url := "http://" + addr + "/gt-signingservice"
	var total time.Duration
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		pdus := benchPDUs(b, i)
		seen := make([]bool, benchHashes)
		b.StartTimer()
		start := time.Now()
		work := make(chan []byte, benchHashes)
		for _, p := range pdus {
			work <- p
		}
		close(work)
		var mu sync.Mutex
		var wg sync.WaitGroup
		for range benchHTTPConns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for p := range work {
					r, err := hc.Post(url, "application/ksi-request", bytes.NewReader(p))
					if err != nil {
						b.Error(err)
						return
					}
					resp, err := io.ReadAll(r.Body)
					r.Body.Close()
					if err != nil {
						b.Error(err)
						return
					}
					mu.Lock()
					err = checkSigned(resp, seen)
					mu.Unlock()
					if err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		total += time.Since(start)
	}
	b.ReportMetric(float64(benchHashes*b.N)/total.Seconds(), "hashes/s")
}
