package calendar

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/internal/pki"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/verifier"
)

// envCrashChild makes the test binary act as a calendar process for
// TestCrashRecovery: it appends seconds as fast as it can (a fake clock
// moves one second per closing) and prints every signature it answers.
const envCrashChild = "TEMPEL_CALENDAR_CRASH_CHILD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(envCrashChild); dir != "" {
		crashChild(dir)
		return
	}
	if path := os.Getenv(envWatermarkChild); path != "" {
		watermarkCreateChild(path)
		return
	}
	os.Exit(m.Run())
}

func crashChild(dir string) {
	keys, _, err := pki.LoadOrInit(filepath.Join(dir, "keys"), pki.InitOptions{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	st, err := OpenStore(filepath.Join(dir, "calendar"), StoreOptions{Logger: discardLogger()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	_, _, has := st.Head()
	wm, found, err := OpenWatermark(filepath.Join(dir, "watermark"), !has)
	if err == nil {
		err = st.CheckMark(wm.Mark(), found)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	start := time.Now().Add(-time.Minute)
	if _, last, ok := st.Head(); ok {
		start = time.Unix(int64(last)+1, 100e6)
	}
	clock := &fakeClock{t: start}
	svc, _ := NewService(ServiceConfig{Store: st, Signer: keys, Watermark: wm, Now: clock.Now, Logger: discardLogger()})
	pub, err := NewPublisher(PublisherConfig{Store: st, Signer: keys, Watermark: wm, Period: 4 * time.Second, Now: clock.Now, Logger: discardLogger()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	for w := 0; w < 4; w++ {
		go func() {
			for i := uint64(0); ; i++ {
				h := sha256.Sum256(binary.BigEndian.AppendUint64([]byte{byte(w)}, i))
				sig, err := svc.Sign(context.Background(), append(ksi.Imprint{1}, h[:]...), 0, "crash-test")
				if err != nil {
					continue
				}
				// A signature is only reported once answered, as a client
				// would only hold it then.
				mu.Lock()
				fmt.Fprintln(out, "sig", hex.EncodeToString(sig))
				out.Flush()
				mu.Unlock()
			}
		}()
	}
	for {
		time.Sleep(time.Millisecond)
		clock.Set(clock.Now().Add(time.Second))
		if err := svc.closeDue(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		// A publication is reported once served, as a verifier would
		// only have seen it then.
		rec, err := pub.PublishDue()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		if rec != nil {
			mu.Lock()
			fmt.Fprintln(out, "pub", rec.Data.Time, hex.EncodeToString(rec.Data.Hash))
			out.Flush()
			mu.Unlock()
		}
	}
}

// TestCrashRecovery kills a real calendar process with SIGKILL at random
// points, many times, and after each restart checks that the stored
// calendar is consistent and that every signature answered before the kill
// still verifies against it.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	var answered []string
	const runs = 12
	for run := 0; run < runs; run++ {
		answered = append(answered, runAndKill(t, dir, r)...)
		checkAfterCrash(t, dir, answered)
	}
	t.Logf("%d runs, %d answered signatures and publications checked after each", runs, len(answered))
}

// runAndKill runs a calendar child process on dir until it has answered
// a random number of requests, kills it with SIGKILL at a random moment,
// and returns everything it reported answered ("sig HEX", "pub T HEX").
func runAndKill(t *testing.T, dir string, r *rand.Rand) []string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), envCrashChild+"="+dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1<<16)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// Wait for a few answers (so appends are under way), then kill at a
	// random moment.
	var answered []string
	need := 1 + r.IntN(40)
	got := 0
	deadline := time.After(60 * time.Second)
wait:
	for got < need {
		select {
		case l, ok := <-lines:
			if !ok {
				break wait
			}
			answered = append(answered, l)
			got++
		case <-deadline:
			break wait
		}
	}
	time.Sleep(time.Duration(r.IntN(20)) * time.Millisecond)
	cmd.Process.Signal(syscall.SIGKILL)
	for l := range lines {
		answered = append(answered, l)
	}
	cmd.Wait()
	if got == 0 {
		t.Fatalf("child answered nothing: %s", stderr.String())
	}
	return answered
}

// TestCrashThenDamage kills a real calendar process with SIGKILL, then
// damages its store as disks and operators do — bytes flipped in the
// newest WAL, the WAL truncated or removed, the store replaced by an
// older copy — and checks that the store is then either refused against
// its watermark, or opens with every answered signature still verifying
// and every served publication still present. Whichever happens, the
// calendar never answers again for a second it had answered.
func TestCrashThenDamage(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	refused := map[string]int{}
	for _, mode := range []string{"flip", "truncate", "remove", "older copy"} {
		for run := 0; run < 3; run++ {
			dir := t.TempDir()
			answered := runAndKill(t, dir, r)
			old := filepath.Join(t.TempDir(), "old")
			if mode == "older copy" {
				if err := os.CopyFS(old, os.DirFS(filepath.Join(dir, "calendar"))); err != nil {
					t.Fatal(err)
				}
				answered = append(answered, runAndKill(t, dir, r)...)
			}
			damage(t, dir, mode, old, r)
			st, err := OpenStore(filepath.Join(dir, "calendar"), StoreOptions{ReadOnly: true, Logger: discardLogger()})
			if err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("%s: open: %v", mode, err)
				}
				refused[mode]++ // damage Pebble itself notices
				continue
			}
			wm, found, err := OpenWatermark(filepath.Join(dir, "watermark"), false)
			if err != nil || !found {
				t.Fatalf("%s: watermark: %v %v", mode, found, err)
			}
			err = st.CheckMark(wm.Mark(), true)
			wm.Close()
			st.Close()
			if errors.Is(err, ErrHistoryLost) {
				refused[mode]++
				continue
			}
			if err != nil {
				t.Fatalf("%s: %v", mode, err)
			}
			checkAfterCrash(t, dir, answered)
		}
	}
	t.Logf("refused against the watermark (of 3 each): %v; the others opened with every answer intact", refused)
	for _, mode := range []string{"truncate", "remove", "older copy"} {
		if refused[mode] == 0 {
			t.Errorf("%s: never refused: the damage should lose answered seconds", mode)
		}
	}
}

// damage harms the store in dir: mode flip, truncate, remove (the newest
// WAL), or "older copy" (the store replaced by the copy in old).
func damage(t *testing.T, dir, mode, old string, r *rand.Rand) {
	t.Helper()
	cal := filepath.Join(dir, "calendar")
	if mode == "older copy" {
		if err := os.RemoveAll(cal); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(old, cal); err != nil {
			t.Fatal(err)
		}
		return
	}
	logs, _ := filepath.Glob(filepath.Join(cal, "*.log"))
	if len(logs) == 0 {
		t.Fatalf("no WAL in %s", cal)
	}
	wal := logs[len(logs)-1]
	st, err := os.Stat(wal)
	if err != nil {
		t.Fatal(err)
	}
	switch mode {
	case "flip":
		f, err := os.OpenFile(wal, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt([]byte{0xde, 0xad, 0xbe, 0xef, 0xde, 0xad, 0xbe, 0xef}, st.Size()/2); err != nil {
			t.Fatal(err)
		}
		f.Close()
	case "truncate":
		if err := os.Truncate(wal, st.Size()/2); err != nil {
			t.Fatal(err)
		}
	case "remove":
		if err := os.Remove(wal); err != nil {
			t.Fatal(err)
		}
	}
}

func checkAfterCrash(t *testing.T, dir string, answered []string) {
	t.Helper()
	st, err := OpenStore(filepath.Join(dir, "calendar"), StoreOptions{Logger: discardLogger()})
	if err != nil {
		t.Fatalf("reopen after kill: %v", err)
	}
	defer st.Close()
	if err := st.Check(); err != nil {
		t.Fatalf("after kill: %v", err)
	}
	keys, err := pki.Load(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	_, last, _ := st.Head()
	var h ksi.Hasher
	for i, line := range answered {
		if rest, ok := strings.CutPrefix(line, "pub "); ok {
			checkServedPublication(t, st, rest)
			continue
		}
		b, err := hex.DecodeString(strings.TrimPrefix(line, "sig "))
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		sig, err := ksi.ParseSignature(b)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		if rep := verifier.Verify(context.Background(), sig, verifier.Internal, verifier.Options{}); rep.Result != verifier.OK {
			t.Fatalf("answer %d: %s %s", i, rep.Code, rep.Message)
		}
		// The answered root is the stored one: the leaf was durable
		// before the answer left the process.
		cal := sig.CalendarChain
		root, err := st.Root(cal.PublicationTime)
		if err != nil {
			t.Fatalf("answer %d (second %d, last %d): %v", i, cal.PublicationTime, last, err)
		}
		out, _ := cal.Output(&h)
		if !out.Equal(root) {
			t.Fatalf("answer %d: signed root differs from the stored root of %d", i, cal.PublicationTime)
		}
		ar := sig.CalendarAuthRecord
		if err := keys.Calendar.CheckSignature(x509.SHA256WithRSA, ar.PublishedData.Raw, ar.SignatureData.Value); err != nil {
			t.Fatalf("answer %d: authentication record: %v", i, err)
		}
		// And it extends to the newest second.
		ch, err := st.Chain(sig.SigningTime(), last)
		if err != nil {
			t.Fatal(err)
		}
		up := ksi.NewPublishedData(last, mustRoot(t, st, last))
		rep := verifier.Verify(context.Background(), sig, verifier.UserPublicationBased, verifier.Options{
			UserPublication: &up, ExtendingAllowed: true, Extender: fixedExtender{ch}})
		if sig.SigningTime() < last && rep.Result != verifier.OK {
			t.Fatalf("answer %d: extended verification: %s %s", i, rep.Code, rep.Message)
		}
	}
}

// checkServedPublication checks that a publication the child served ("T
// HEX") is still in the store with the same value.
func checkServedPublication(t *testing.T, st *Store, line string) {
	t.Helper()
	ts, h, _ := strings.Cut(line, " ")
	var sec uint64
	fmt.Sscan(ts, &sec)
	rec, err := st.publication(sec)
	if err != nil {
		t.Fatalf("served publication of %d: %v", sec, err)
	}
	if hex.EncodeToString(rec.Data.Hash) != h {
		t.Fatalf("served publication of %d changed", sec)
	}
	if root := mustRoot(t, st, sec); !root.Equal(rec.Data.Hash) {
		t.Fatalf("publication of %d is not the calendar root", sec)
	}
}

type fixedExtender struct{ ch *ksi.CalendarChain }

func (f fixedExtender) Extend(context.Context, uint64, uint64) (*ksi.CalendarChain, error) {
	return f.ch, nil
}

func mustRoot(t *testing.T, st *Store, p uint64) ksi.Imprint {
	t.Helper()
	r, err := st.Root(p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
