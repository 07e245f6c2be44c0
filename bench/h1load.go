package bench

import (
	"context"
	"sync"
	"time"
)

// DefaultHTTPConns bounds the HTTP/1.1 connections of ModeREST and
// ModePDU when [Config.HTTPConns] is 0, as DefaultTSAConns does for
// ModeTSA: an HTTP/1.1 request holds its connection until it is answered
// (a signature waits for its round and calendar second, up to about a
// second), so the connections bound the requests in flight; requests
// beyond them wait in the generator, and that wait counts in their
// latency from the schedule. The server refuses connections beyond its
// own --max-conns (10,000 by default).
const DefaultHTTPConns = DefaultTSAConns

// h1Call makes request n of worker and returns the size of the
// signature it got and when the request left (Unix ns: once it had a
// connection).
type h1Call func(ctx context.Context, worker, n uint64) (size int, sent int64, err error)

// runH1 drives a mode that posts over HTTP/1.1: Concurrency callers one
// request after another, or with a Rate as many dispatchers sharing the
// schedule, each request on its own goroutine, timed as unary calls at a
// rate are (from the schedule, and from sending, which here leaves out
// the wait for a connection; refusals apart).
func (r *run) runH1(runCtx, callCtx context.Context, call h1Call) {
	var wg sync.WaitGroup
	for i := range r.cfg.Concurrency {
		wg.Add(1)
		worker := uint64(i)
		go func() {
			defer wg.Done()
			if r.cfg.Rate > 0 {
				r.h1AtRate(runCtx, callCtx, worker, call)
				return
			}
			for n := uint64(0); runCtx.Err() == nil; n++ {
				t0 := time.Now()
				size, _, err := call(callCtx, worker, n)
				if err != nil {
					r.fail(err)
					continue
				}
				r.record(t0.UnixNano(), time.Now().UnixNano(), size)
			}
		}()
	}
	wg.Wait()
}

// h1AtRate is unaryAtRate for an h1Call.
func (r *run) h1AtRate(runCtx, callCtx context.Context, worker uint64, call h1Call) {
	// The last requests get drainTimeout after the run, as the lean
	// unary client's do; then what still waits for a connection or an
	// answer fails.
	callCtx, cancel := context.WithDeadline(callCtx, time.Unix(0, r.measureTo).Add(drainTimeout))
	defer cancel()
	sch := r.schedule(worker, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	for n := uint64(0); ; n++ {
		t0, ok := sch.wait(runCtx)
		if !ok {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			size, sent, err := call(callCtx, worker, n)
			r.recordCall(t0, sent, time.Now().UnixNano(), size, err)
		}()
	}
}

// bodySnippet is the start of an answer's body for an error message.
func bodySnippet(body []byte) string {
	const most = 200
	if len(body) > most {
		return string(body[:most]) + "..."
	}
	return string(body)
}
