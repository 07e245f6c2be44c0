package clustertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/client"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/verifier"
)

// maxExtended bounds the signatures check extends through each member:
// a long run answers thousands, and a sample spread over the whole run
// finds a member whose calendar differs as well as all of them would,
// at a bounded cost.
const maxExtended = 400

// extendWorkers is how many extension requests check keeps in flight
// at each member: enough to hide the round trips, few enough for a
// loaded 2-core machine.
const extendWorkers = 4

// extendWait bounds how long check waits for a member to extend: one
// that refuses (not caught up with the publication) gets this long to
// catch up, counted from the first request to it.
const extendWait = 30 * time.Second

// publishedWait bounds the wait for a publication covering the newest
// answered signature: the members publish every 5 s, so one is due
// within a period and a commit.
const publishedWait = 30 * time.Second

// sample returns all of ok if there are at most n, otherwise n of them
// evenly spaced over ok, always with the first and the last.
func sample(ok []signed, n int) []signed {
	if len(ok) <= n || n < 2 {
		return ok
	}
	out := make([]signed, n)
	for i := range n {
		out[i] = ok[i*(len(ok)-1)/(n-1)]
	}
	return out
}

// newestSecond is the latest signing second among the answers.
func newestSecond(ok []signed) uint64 {
	var s uint64
	for _, a := range ok {
		s = max(s, a.sig.SigningTime())
	}
	return s
}

// waitPublished waits until every running member serves a publications
// file whose newest publication is at or after second sec, so that
// every signature answered up to sec can be extended to it.
func (c *cluster) waitPublished(sec uint64, d time.Duration) {
	c.t.Helper()
	start := time.Now()
	c.waitFor(fmt.Sprintf("every member publishing second %d or later", sec), d, func() bool {
		for _, m := range c.running() {
			if t, err := m.newestPublication(); err != nil || t < sec {
				return false
			}
		}
		return true
	})
	c.t.Logf("every running member serves a publication at or after second %d, the newest answered, after %v", sec, time.Since(start).Round(time.Millisecond))
}

// newestPublication is the time of the newest publication in the
// member's publications file, unverified (publicationsFiles verifies).
func (m *member) newestPublication() (uint64, error) {
	resp, err := m.client().Get(m.url("/publications.bin"))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	pf, err := ksi.ParsePublicationsFile(b)
	if err != nil {
		return 0, err
	}
	latest := pf.Latest()
	if latest == nil {
		return 0, errors.New("no publication yet")
	}
	return latest.Data.Time, nil
}

// extendEach extends every signature of ok (a sample of maxExtended
// when there are more) through each of members, the running members in
// the order of pubfiles, to that member's newest publication with the
// SDK, as `tempel extend` does. Each result must verify publication-based
// with that member's publications file and the document, and the
// results of all members must be byte-identical: the members hold the
// same calendar, so they give the same chain to the same publication.
func (c *cluster) extendEach(ok []signed, members []*member, pubfiles []*ksi.PublicationsFile) {
	c.t.Helper()
	if len(members) != len(pubfiles) {
		c.t.Fatalf("%d running members, %d publications files", len(members), len(pubfiles))
	}
	todo := sample(ok, maxExtended)
	sec := newestSecond(ok)
	start := time.Now()
	exts := make([][][]byte, len(members))
	errs := make([]error, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		if latest := pubfiles[i].Latest(); latest == nil || latest.Data.Time < sec {
			c.t.Fatalf("member %d's publications file does not reach second %d, the newest answered", m.id, sec)
		}
	}
	for i, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			exts[i], errs[i] = c.extendThrough(m, todo, pubfiles[i])
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			c.t.Fatalf("member %d: %v", members[i].id, err)
		}
	}
	for j, a := range todo {
		for i := 1; i < len(members); i++ {
			if !bytes.Equal(exts[i][j], exts[0][j]) {
				c.t.Fatalf("the signature of second %d extended through member %d differs from the one through member %d", a.sig.SigningTime(), members[i].id, members[0].id)
			}
		}
	}
	ids := make([]string, len(members))
	for i, m := range members {
		ids[i] = fmt.Sprint(m.id)
	}
	what := fmt.Sprintf("all %d answered signatures", len(ok))
	if len(todo) < len(ok) {
		what = fmt.Sprintf("%d of %d answered signatures (evenly spaced, with the first and the last)", len(todo), len(ok))
	}
	c.t.Logf("%s extended through each of members %s to publication %s, verified publication-based with each member's file, identical across members (%v)",
		what, strings.Join(ids, ","), pubfiles[0].Latest().Data, time.Since(start).Round(time.Millisecond))
}

// extendThrough extends each of todo through member m alone to the
// newest publication of pf and verifies the result against pf. It
// returns the encoded extended signatures in the order of todo.
func (c *cluster) extendThrough(m *member, todo []signed, pf *ksi.PublicationsFile) ([][]byte, error) {
	// One endpoint: the extension must come from this member, never
	// from another the SDK could fail over to.
	cl, err := client.New(client.Config{Endpoints: []string{m.endpoint()}, TLS: c.tls, Timeout: 5 * time.Second, Retries: 1, Login: c.login, Key: c.key})
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), extendWait)
	defer cancel()
	rec := pf.Latest()
	out := make([][]byte, len(todo))
	next := make(chan int)
	var (
		mu    sync.Mutex
		first error
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if first == nil {
			first = err
			cancel()
		}
	}
	var wg sync.WaitGroup
	for range extendWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range next {
				b, err := extendVerified(ctx, cl, todo[j], rec, pf)
				if err != nil {
					fail(fmt.Errorf("the signature of second %d: %w", todo[j].sig.SigningTime(), err))
					continue
				}
				out[j] = b
			}
		}()
	}
feed:
	for j := range todo {
		select {
		case next <- j:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if first != nil {
		return nil, first
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("extending %d signatures: %w", len(todo), err)
	}
	return out, nil
}

// extendVerified extends a through cl to rec, waiting (until ctx ends)
// while the member refuses for a reason that passes (its calendar not
// yet at the publication, unavailable, overloaded), and verifies the
// result publication-based with pf. It returns the encoded result.
func extendVerified(ctx context.Context, cl *client.Client, a signed, rec *ksi.PublicationRecord, pf *ksi.PublicationsFile) ([]byte, error) {
	var ext *ksi.Signature
	for {
		var err error
		ext, err = cl.Extend(ctx, a.sig, rec)
		if err == nil {
			break
		}
		if !errors.Is(err, client.ErrOutOfRange) && !errors.Is(err, client.ErrUnavailable) && !errors.Is(err, client.ErrOverloaded) {
			return nil, fmt.Errorf("extend: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("extend: still refused after %v: %w", extendWait, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	// Without an extender the verifier cannot extend on its own: the
	// signature must carry the file's publication already.
	rep := verifier.Verify(ctx, ext, verifier.PublicationsFileBased, verifier.Options{Document: a.doc, PublicationsFile: pf})
	if err := rep.Err(); err != nil {
		return nil, fmt.Errorf("the extended signature does not verify with the member's publications file: %w", err)
	}
	if pr := ext.PublicationRecord; pr == nil || pr.Data.Time != rec.Data.Time || !pr.Data.Hash.Equal(rec.Data.Hash) {
		return nil, fmt.Errorf("the extended signature does not carry publication %s", rec.Data)
	}
	b, err := ext.Encode()
	if err != nil {
		return nil, fmt.Errorf("encode the extended signature: %w", err)
	}
	return b, nil
}

// TestSample checks the sample check extends: all when few, otherwise
// evenly spaced, in order, without repeats, with the first and the last.
func TestSample(t *testing.T) {
	mk := func(n int) []signed {
		s := make([]signed, n)
		for i := range s {
			s[i].at = time.Unix(int64(i), 0)
		}
		return s
	}
	if got := sample(mk(5), 400); len(got) != 5 {
		t.Fatalf("5 answers: sampled %d, want all", len(got))
	}
	for _, n := range []int{401, 402, 1000, 12345} {
		got := sample(mk(n), 400)
		if len(got) != 400 || got[0].at.Unix() != 0 || got[399].at.Unix() != int64(n-1) {
			t.Fatalf("%d answers: sampled %d from %d to %d", n, len(got), got[0].at.Unix(), got[len(got)-1].at.Unix())
		}
		for i := 1; i < len(got); i++ {
			if d := got[i].at.Unix() - got[i-1].at.Unix(); d < 1 || d > int64(n/399+1) {
				t.Fatalf("%d answers: step %d between samples %d and %d", n, d, i-1, i)
			}
		}
	}
}
