package verifier_test

import (
	"context"
	"testing"

	"github.com/tempel-ksi/tempel/internal/testpack"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/verifier"
)

// BenchmarkVerifyInternal parses tlv/ok-sig-2014-04-30.1.ksig from bytes
// and runs the internal policy with the document hash, per iteration.
func BenchmarkVerifyInternal(b *testing.B) {
	raw := testpack.Read(b, "tlv", "ok-sig-2014-04-30.1.ksig")
	doc, _ := ksi.ParseImprintText("SHA-256:11a700b0c8066c47ecba05ed37bc14dcadb238552d86c659342d1d7e87b8772d")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		sig, err := ksi.ParseSignature(raw)
		if err != nil {
			b.Fatal(err)
		}
		if rep := verifier.Verify(ctx, sig, verifier.Internal, verifier.Options{Document: doc}); rep.Result != verifier.OK {
			b.Fatal(rep.Message)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sigs/s")
}
