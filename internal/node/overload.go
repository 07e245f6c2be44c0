package node

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/tempel-ksi/tempel/internal/server"
	tempelv1 "github.com/tempel-ksi/tempel/proto/tempel/v1"
)

// DefaultMaxMemory is the memory a node plans to use when its
// configuration names none (`tempel serve --max-memory`): the Go soft
// memory limit, of which RequestBudgetShare is the budget for waiting
// requests. It leaves the heap room to grow through the answer bursts at
// the target load without the soft limit forcing collections into them
// (docs/design/latency.md#admission-and-the-memory-budget).
const DefaultMaxMemory = 1792 << 20

// RequestBudgetShare is the part of the memory limit that waiting
// requests may hold, in halves: the other half is for rounds being built,
// the connections' buffers, the calendar and garbage not yet collected.
const RequestBudgetShare = 2

// requestBudget is the budget of waiting requests for a memory limit.
func requestBudget(maxMemory int64) int64 {
	if maxMemory <= 0 {
		maxMemory = DefaultMaxMemory
	}
	return maxMemory / RequestBudgetShare
}

// errTapOverloaded refuses a Sign call before the server starts it.
var errTapOverloaded = status.Error(codes.ResourceExhausted, "server: overloaded: the node's memory for waiting requests is in use, try again shortly")

// admit is the gRPC server's tap; it decides as a call's headers arrive,
// before the server makes a stream, a goroutine and its buffers for it,
// or reads a byte of its message.
//
// First, who calls: a call that needs credentials is authenticated here
// (the interceptors do it again, to hand its identity to the services),
// so a caller with wrong credentials costs no more than its headers and
// learns that, rather than the node's load.
//
// Then, while the budget has no room for another parked caller, a Sign
// call is refused. Calls that pass still reserve their cost in the
// engine; this only makes refusing cheap when refusing is most of what
// the node does.
func (n *Node) admit(ctx context.Context, info *tap.Info) (context.Context, error) {
	if n.auth.Access(server.IfaceGRPC, info.FullMethodName) != server.Public {
		// The context returned here becomes the call's: the interceptors
		// find the caller in it and do not check the credentials again.
		// The transport has attached info.Header to ctx already.
		actx, err := n.authenticateMD(ctx, info.Header, info.FullMethodName)
		if err != nil {
			n.metrics.count("grpc", grpcMethodLabel(info.FullMethodName), codes.Unauthenticated.String())
			return nil, err
		}
		ctx = actx
	}
	if info.FullMethodName != tempelv1.Signer_Sign_FullMethodName || n.h.admitsSign() {
		return ctx, nil
	}
	n.metrics.count("grpc", "Sign", codes.ResourceExhausted.String())
	return nil, errTapOverloaded
}

// overloaded says why the node refuses requests for lack of memory, or nil.
func (n *Node) overloaded() error {
	return n.h.overloaded()
}

// Memory return: once waiting requests have held less than quietShare
// of the budget for quietFor (their peak in each second), while the
// runtime holds more than a quarter of the budget from the system, the
// node collects garbage and returns the free memory to the operating
// system at once, at most every returnEvery. The runtime would return it
// too, but slowly (its background scavenger paces itself to about 1 % of
// a core, and keeps what GOGC lets the heap grow to): after an overload
// gigabytes stayed for minutes. A busy node never counts as quiet, so a
// full collection never lands in the middle of its load.
const (
	quietShare  = 20 // 5 % of the budget
	quietFor    = 3 * time.Second
	returnEvery = 20 * time.Second
)

// retained is the memory the Go runtime holds from the operating system.
// (What is garbage in it is known only after a collection, and a quiet
// node may not collect for minutes: hence no comparison with the live
// heap.)
func retained() int64 {
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64()) - int64(s[1].Value.Uint64())
}

// returnMemory runs until ctx ends, returning memory to the operating
// system when the node is quiet (see quietFor).
func (n *Node) returnMemory(ctx context.Context) {
	b := n.agg.Budget()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var quiet time.Duration
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if b.TakePeak() > b.Limit()/quietShare {
			quiet = 0
			continue
		}
		quiet += time.Second
		if quiet < quietFor || time.Since(last) < returnEvery {
			continue
		}
		if r := retained(); r > b.Limit()/4 {
			start := time.Now()
			debug.FreeOSMemory()
			last = time.Now()
			n.log.Info("load has dropped: returned free memory to the system", "held_mib", r>>20, "now_mib", retained()>>20, "took", last.Sub(start))
		}
	}
}
