package node

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/pdu"
	"github.com/tempel-ksi/tempel/ksi/round"
	tempelv1 "github.com/tempel-ksi/tempel/proto/tempel/v1"
	"github.com/tempel-ksi/tempel/verifier"
)

// acceptedAlgs are the document hash algorithms of docs/design/formats.md#hash-algorithms that
// Tempel implements and that are not deprecated now.
var acceptedAlgs = []ksi.HashAlg{ksi.SHA2_256, ksi.RIPEMD160, ksi.SHA2_384, ksi.SHA2_512, ksi.SHA3_224, ksi.SHA3_256, ksi.SHA3_384, ksi.SHA3_512}

func algHash(t *testing.T, a ksi.HashAlg, doc string) ksi.Imprint {
	t.Helper()
	h, err := a.Digest([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// checkFinished checks a signature as Tempel's SDK does (what gRPC and
// REST return): the lowest chain's first correction counts the request's
// level, and the internal policy passes with that input level (and fails
// one level higher, GEN-03). machine, if not "", is the machine id the
// gateway's metadata must name.
func checkFinished(raw []byte, h ksi.Imprint, level uint64, machine string) error {
	sig, err := ksi.ParseSignature(raw)
	if err != nil {
		return err
	}
	if got := sig.Chains()[0].Links[0].LevelCorrection; got != level {
		return fmt.Errorf("first correction %d, want %d", got, level)
	}
	ctx := context.Background()
	if rep := verifier.Verify(ctx, sig, verifier.Internal, verifier.Options{Document: h, InputLevel: level}); rep.Result != verifier.OK {
		return fmt.Errorf("internal policy: %s %s: %s", rep.Rule, rep.Code, rep.Message)
	}
	if rep := verifier.Verify(ctx, sig, verifier.Internal, verifier.Options{Document: h, InputLevel: level + 1}); rep.Code != verifier.GEN03 {
		return fmt.Errorf("at level %d: %s, want GEN-03", level+1, rep.Code)
	}
	if md := sig.Metadata(); len(md) == 0 || md[0].MachineID != machine {
		return fmt.Errorf("metadata %+v, want machine id %q", md, machine)
	}
	return nil
}

// referenceClientSignature builds the signature a reference client
// stores from the elements of an aggregation response to a request at
// level (libksi addRootLevel, goksi AdjustLevelCorrection,
// docs/design/formats.md#level-corrections): the level added to the first
// correction of the lowest chain, the elements wrapped in 0x800. It
// re-encodes the chain from the parsed model, not with
// ksi.ShiftInputLevel, the server's arithmetic.
func referenceClientSignature(elements [][]byte, level uint64) (*ksi.Signature, error) {
	sig, err := ksi.SignatureFromElements(elements)
	if err != nil || level == 0 {
		return sig, err
	}
	low := sig.Chains()[0]
	links := append([]ksi.Link(nil), low.Links...)
	links[0].LevelCorrection += level
	c, err := ksi.NewAggregationChain(low.AggregationTime, low.ChainIndex, low.InputHash, low.Algorithm, links)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(elements))
	for i, e := range elements {
		if bytes.Equal(e, low.Raw) {
			e = c.Raw
		}
		out[i] = e
	}
	return ksi.SignatureFromElements(out)
}

// checkPDU checks an aggregation response as a reference client does,
// and that this could fail: the stored signature passes the internal
// policy at the request's level (and fails one higher, GEN-03), while for
// a level above 0 the elements as sent, without the client's adjustment,
// are not the finished signature (INT-01).
func checkPDU(r pdu.AggregationResponse, h ksi.Imprint, level uint64) (*ksi.Signature, error) {
	if r.Status != 0 {
		return nil, fmt.Errorf("status %#x %s", r.Status, r.ErrorMessage)
	}
	sig, err := referenceClientSignature(r.SignatureElements, level)
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	if rep := verifier.Verify(ctx, sig, verifier.Internal, verifier.Options{Document: h, InputLevel: level}); rep.Result != verifier.OK {
		return nil, fmt.Errorf("the client's signature fails %s %s: %s", rep.Rule, rep.Code, rep.Message)
	}
	if rep := verifier.Verify(ctx, sig, verifier.Internal, verifier.Options{Document: h, InputLevel: level + 1}); rep.Code != verifier.GEN03 {
		return nil, fmt.Errorf("at level %d: %s, want GEN-03", level+1, rep.Code)
	}
	if level > 0 {
		sent, err := ksi.SignatureFromElements(r.SignatureElements)
		if err != nil {
			return nil, err
		}
		if rep := verifier.Verify(ctx, sent, verifier.Internal, verifier.Options{Document: h}); rep.Code != verifier.INT01 {
			return nil, fmt.Errorf("the response as sent gives %s, want INT-01 (counted twice by a client)", rep.Code)
		}
	}
	return sig, nil
}

// postPDU sends an aggregator PDU as anon (development mode) and returns
// the verified response.
func postPDU(base string, req *pdu.AggregatorRequest) (*pdu.AggregatorResponse, error) {
	req.Header = pdu.Header{LoginID: "anon"}
	raw, err := req.Encode(ksi.SHA2_256, []byte("anon"))
	if err != nil {
		return nil, err
	}
	resp, err := http.Post(base+"/gt-signingservice", "application/ksi-request", bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	out, err := pdu.ParseAggregatorResponse(b)
	if err != nil {
		return nil, fmt.Errorf("PDU response (%s): %w", resp.Status, err)
	}
	return out, out.Verify([]byte("anon"))
}

// postREST signs over REST with the ksi-tool hash syntax.
func postREST(base string, h ksi.Imprint, level uint64) (int, []byte, error) {
	body, _ := json.Marshal(map[string]any{"hash": h.String(), "level": level})
	resp, err := http.Post(base+"/v1/sign", "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// Every accepted document hash algorithm at levels 0, 1, 2 and the
// maximum, over gRPC (Sign with and without a machine id, SignStream,
// SignBatchStream in both forms), REST and KSI PDU, against a real node:
// gRPC and REST return the finished signature, PDU the answer relative
// to the request that the reference clients complete.
func TestEveryInterfaceEveryLevelEveryHash(t *testing.T) {
	n := start(t, Config{Role: RoleAll, DataDir: t.TempDir(), PublishEvery: time.Hour})
	base := "http://" + n.addr
	maxLevel := uint64(n.n.agg.Config().MaxLevel)
	if maxLevel != 20 {
		t.Fatalf("default max level %d, want 20", maxLevel)
	}
	levels := []uint64{0, 1, 2, maxLevel}
	signer := tempelv1.NewSignerClient(dial(t, n.addr))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	type job struct {
		h     ksi.Imprint
		level uint64
	}
	var jobs []job
	for _, lvl := range levels {
		for _, a := range acceptedAlgs {
			jobs = append(jobs, job{algHash(t, a, fmt.Sprintf("%s at %d", a, lvl)), lvl})
		}
	}
	// Every call in flight at once: each waits for the calendar's second.
	var wg sync.WaitGroup
	run := func(what string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				t.Errorf("%s: %v", what, err)
			}
		}()
	}
	for _, j := range jobs {
		for _, machine := range []string{"", "gateway-7"} {
			run(fmt.Sprintf("gRPC Sign %s at %d, machine %q", j.h.Alg(), j.level, machine), func() error {
				cctx := ctx
				if machine != "" {
					cctx = metadata.AppendToOutgoingContext(ctx, "x-tempel-machine-id", machine)
				}
				resp, err := signer.Sign(cctx, &tempelv1.SignRequest{Hash: j.h, Level: uint32(j.level)})
				if err != nil {
					return err
				}
				return checkFinished(resp.Signature, j.h, j.level, machine)
			})
		}
		run(fmt.Sprintf("REST %s at %d", j.h.Alg(), j.level), func() error {
			code, body, err := postREST(base, j.h, j.level)
			if err != nil || code != 200 {
				return fmt.Errorf("%d %s %v", code, body, err)
			}
			var sr struct{ Signature []byte }
			if err := json.Unmarshal(body, &sr); err != nil {
				return err
			}
			return checkFinished(sr.Signature, j.h, j.level, "")
		})
	}
	for _, lvl := range levels {
		run(fmt.Sprintf("PDU at %d", lvl), func() error {
			var reqs []pdu.AggregationRequest
			for i, j := range jobs {
				if j.level == lvl {
					reqs = append(reqs, pdu.AggregationRequest{RequestID: uint64(i), Hash: j.h, Level: lvl, HasLevel: lvl > 0})
				}
			}
			out, err := postPDU(base, &pdu.AggregatorRequest{Requests: reqs})
			if err != nil {
				return err
			}
			if len(out.Responses) != len(reqs) {
				return fmt.Errorf("%d responses to %d requests", len(out.Responses), len(reqs))
			}
			for i, r := range out.Responses {
				if _, err := checkPDU(r, reqs[i].Hash, lvl); err != nil {
					return fmt.Errorf("%s: %w", reqs[i].Hash.Alg(), err)
				}
			}
			return nil
		})
	}
	run("SignStream", func() error {
		st, err := signer.SignStream(ctx)
		if err != nil {
			return err
		}
		for i, j := range jobs {
			if err := st.Send(&tempelv1.SignRequest{RequestId: uint64(i + 1), Hash: j.h, Level: uint32(j.level)}); err != nil {
				return err
			}
		}
		if err := st.CloseSend(); err != nil {
			return err
		}
		for range jobs {
			r, err := st.Recv()
			if err != nil {
				return err
			}
			j := jobs[r.RequestId-1]
			if r.Status != 0 {
				return fmt.Errorf("%s at %d: status %#x %s", j.h.Alg(), j.level, r.Status, r.ErrorMessage)
			}
			if err := checkFinished(r.Signature, j.h, j.level, ""); err != nil {
				return fmt.Errorf("%s at %d: %w", j.h.Alg(), j.level, err)
			}
		}
		return nil
	})
	for _, shared := range []bool{false, true} {
		run(fmt.Sprintf("SignBatchStream shared %v", shared), func() error {
			st, err := signer.SignBatchStream(ctx)
			if err != nil {
				return err
			}
			b := &tempelv1.SignBatch{SharedRounds: shared}
			for i, j := range jobs {
				b.Requests = append(b.Requests, &tempelv1.SignRequest{RequestId: uint64(i + 1), Hash: j.h, Level: uint32(j.level)})
			}
			if err := st.Send(b); err != nil {
				return err
			}
			if err := st.CloseSend(); err != nil {
				return err
			}
			var legs round.Joiner
			sigs := map[uint64][]byte{}
			var joinErr error
			for {
				rb, err := st.Recv()
				if err == io.EOF {
					break
				} else if err != nil {
					return err
				}
				for _, r := range rb.Responses {
					switch {
					case r.Status != 0:
						return fmt.Errorf("request %d: status %#x %s", r.RequestId, r.Status, r.ErrorMessage)
					case r.Round != 0:
						legs.Add(r.Round, round.Leg{ID: r.RequestId, Hash: jobs[r.RequestId-1].h, Shape: r.Shape, Links: r.Leg})
					default:
						sigs[r.RequestId] = r.Signature
					}
				}
				for _, p := range rb.Rounds {
					ans := &round.Answer{AggregationTime: p.AggregationTime, ChainIndex: p.ChainIndex, Elements: p.Elements}
					legs.Join(p.Id, ksi.HashAlg(p.Algorithm), ans, func(l *round.Leg, sig []byte, err error) {
						sigs[l.ID] = sig
						if err != nil && joinErr == nil {
							joinErr = err
						}
					})
				}
			}
			if joinErr != nil {
				return joinErr
			}
			if legs.Len() != 0 {
				return fmt.Errorf("%d legs whose round was never sent", legs.Len())
			}
			if len(sigs) != len(jobs) {
				return fmt.Errorf("%d signatures for %d requests", len(sigs), len(jobs))
			}
			for id, raw := range sigs {
				j := jobs[id-1]
				if err := checkFinished(raw, j.h, j.level, ""); err != nil {
					return fmt.Errorf("%s at %d: %w", j.h.Alg(), j.level, err)
				}
			}
			return nil
		})
	}
	wg.Wait()
}

// A client with its own metadata (ksi-tool --mdata, which needs a level
// of at least 1): its local tree hashes the document with its metadata
// record into a root at level 1, signed over PDU at level 1; the root's
// signature completed as the reference clients do, with the client's
// chain below it, is the document's signature, naming both the client's
// record and the gateway's.
func TestPDUClientMetadata(t *testing.T) {
	n := start(t, Config{Role: RoleAll, DataDir: t.TempDir(), PublishEvery: time.Hour})
	for _, a := range []ksi.HashAlg{ksi.SHA2_256, ksi.SHA2_512, ksi.SHA3_256} {
		doc := algHash(t, a, "registry record")
		mine, err := ksi.AppendMetadataValue(nil, ksi.MetadataFields{ClientID: "registry-client", MachineID: "host-1"})
		if err != nil {
			t.Fatal(err)
		}
		local, err := round.Build(ksi.SHA2_256, []round.Request{{Hash: doc, Meta: mine}})
		if err != nil {
			t.Fatal(err)
		}
		root, level := local.Root()
		if level != 1 {
			t.Fatalf("local root at level %d", level)
		}
		out, err := postPDU("http://"+n.addr, &pdu.AggregatorRequest{Requests: []pdu.AggregationRequest{{RequestID: 1, Hash: root, Level: 1, HasLevel: true}}})
		if err != nil {
			t.Fatal(err)
		}
		rootSig, err := checkPDU(out.Responses[0], root, 1)
		if err != nil {
			t.Fatalf("%s: root: %v", a, err)
		}
		ans, err := round.AnswerFromSignature(rootSig, level)
		if err != nil {
			t.Fatal(err)
		}
		var w round.Writer
		raw, err := w.AppendSignature(nil, local, 0, ans)
		if err != nil {
			t.Fatal(err)
		}
		sig, err := ksi.ParseSignature(raw)
		if err != nil {
			t.Fatal(err)
		}
		if rep := verifier.Verify(context.Background(), sig, verifier.Internal, verifier.Options{Document: doc}); rep.Result != verifier.OK {
			t.Fatalf("%s: document signature: %s %s", a, rep.Code, rep.Message)
		}
		if md := sig.Metadata(); len(md) < 2 || md[0].ClientID != "registry-client" || md[1].ClientID != "anon" {
			t.Fatalf("%s: metadata %+v", a, md)
		}
	}
}

// SHA-1 (deprecated since 2016-07-01), SM3 (not implemented) and an
// unknown algorithm id are refused on every interface with a status that
// names them: gRPC INVALID_ARGUMENT (and 0x103 on a stream), REST 400.
func TestRefusedHashAlgorithmsEverywhere(t *testing.T) {
	n := start(t, Config{Role: RoleAll, DataDir: t.TempDir(), PublishEvery: time.Hour})
	signer := tempelv1.NewSignerClient(dial(t, n.addr))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tc := range []struct {
		h    ksi.Imprint
		want string
	}{
		{algHash(t, ksi.SHA1, "old"), "SHA-1 is deprecated since 2016-07-01"},
		{append(ksi.Imprint{byte(ksi.SM3)}, make([]byte, 32)...), "SM3"},
		{append(ksi.Imprint{0x0C}, make([]byte, 32)...), "0x0c"},
	} {
		_, err := signer.Sign(ctx, &tempelv1.SignRequest{Hash: tc.h})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("gRPC Sign %x…: %v, want INVALID_ARGUMENT naming %q", tc.h[:4], err, tc.want)
		}
		st, err := signer.SignStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&tempelv1.SignRequest{RequestId: 9, Hash: tc.h}); err != nil {
			t.Fatal(err)
		}
		st.CloseSend()
		r, err := st.Recv()
		if err != nil || r.Status != uint32(pdu.StatusInvalidPayload) || !strings.Contains(r.ErrorMessage, tc.want) {
			t.Errorf("SignStream %x…: %v %+v, want 0x103 naming %q", tc.h[:4], err, r, tc.want)
		}
		// REST with the base64 imprint (the ksi-tool text form cannot
		// name an unknown id).
		body, _ := json.Marshal(map[string]any{"hash": base64.StdEncoding.EncodeToString(tc.h)})
		resp, err := http.Post("http://"+n.addr+"/v1/sign", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), tc.want) {
			t.Errorf("REST %x…: %s %s, want 400 naming %q", tc.h[:4], resp.Status, b, tc.want)
		}
	}
}
