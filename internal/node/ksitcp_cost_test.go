package node

import (
	"context"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/aggregator"
	"github.com/tempel-ksi/tempel/internal/server"
)

// TestKSITCPPDUCost measures what a one-request ksi+tcp PDU parked for
// its round holds, and fails when it exceeds what the budget charges for
// it: its bytes, KSITCPPDUCost and its request's CostCaller.
func TestKSITCPPDUCost(t *testing.T) {
	if testing.Short() {
		t.Skip("measures a thousand parked PDUs")
	}
	if raceEnabled {
		t.Skip("the race detector changes what requests hold")
	}
	const pdus = 1000
	n, ctx := manualNode(t, Config{KSITCPListen: "127.0.0.1:0"})
	sctx, stop := context.WithCancel(ctx)
	wait := n.serveKSITCP(sctx)
	t.Cleanup(func() { stop(); wait() })
	var all []byte
	for i := uint64(1); i <= pdus; i++ {
		all = append(all, signPDU(t, "anon", "anon", i)...)
	}
	total := int64(len(all))
	pduLen := total / pdus
	k := dialKSITCP(t, n)
	before := settledInUse(t)
	k.write(all)
	all = nil
	waitFor(t, 20*time.Second, "the PDUs to be parked", func() bool { return n.agg.QueueLen() == pdus })
	per := (inUse() - before) / pdus
	charged := pduLen + server.KSITCPPDUCost + aggregator.CostCaller
	t.Logf("a parked one-request ksi+tcp PDU holds %d bytes; charged %d (%d bytes + KSITCPPDUCost %d + CostCaller %d)",
		per, charged, pduLen, server.KSITCPPDUCost, aggregator.CostCaller)
	if per > charged {
		t.Errorf("a parked ksi+tcp PDU holds %d bytes, more than the %d charged", per, charged)
	}
	if used, want := n.agg.Budget().Used(), total+pdus*(server.KSITCPPDUCost+aggregator.CostCaller); used != want {
		t.Errorf("budget: %d in use, want %d", used, want)
	}
	n.agg.CloseRound(ctx)
	for range pdus {
		k.read()
	}
	waitFor(t, 20*time.Second, "every PDU's cost to be released", func() bool { return n.agg.Budget().Used() == 0 })
}
