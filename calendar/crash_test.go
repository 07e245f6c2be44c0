package calendar

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
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
	start := time.Now().Add(-time.Minute)
	if _, last, ok := st.Head(); ok {
		start = time.Unix(int64(last)+1, 100e6)
	}
	clock := &fakeClock{t: start}
	svc, _ := NewService(ServiceConfig{Store: st, Signer: keys, Now: clock.Now, Logger: discardLogger()})
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
				fmt.Fprintln(out, hex.EncodeToString(sig))
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
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	var answered []string
	const runs = 12
	for run := 0; run < runs; run++ {
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
		// Wait for a few answers (so appends are under way), then kill at
		// a random moment.
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
			t.Fatalf("run %d: child answered nothing: %s", run, stderr.String())
		}
		checkAfterCrash(t, dir, answered)
	}
	t.Logf("%d runs, %d answered signatures checked after each", runs, len(answered))
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
		b, err := hex.DecodeString(line)
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
