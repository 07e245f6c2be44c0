package cli

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/ksi"
)

func TestParseTimeArg(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"1700000000", 1700000000, true},
		{"2026-11-22T03:40:05Z", 1795318805, true},
		{"2026-11-22T05:40:05+02:00", 1795318805, true},
		{"2026-11-22", 1795305600, true},
		{"1969-12-31T23:59:59Z", 0, false},
		{"yesterday", 0, false},
		{"", 0, false},
	} {
		got, err := parseTimeArg(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseTimeArg(%q) = %d, %v; want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestNextPublication(t *testing.T) {
	for _, tc := range []struct{ last, period, t, want uint64 }{
		{100, 5, 103, 105},
		{100, 5, 105, 105},
		{100, 5, 106, 110},
		{100, 0, 103, 103}, // period unknown: the signing time itself
		{100, 5, 90, 90},
	} {
		if got := nextPublication(tc.last, tc.period, tc.t); got != tc.want {
			t.Errorf("nextPublication(%d, %d, %d) = %d, want %d", tc.last, tc.period, tc.t, got, tc.want)
		}
	}
}

func TestCheckOutputs(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "a.ksig")
	if err := os.WriteFile(existing, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	fresh := filepath.Join(dir, "b.ksig")
	assertExitCode(t, checkOutputs([]string{existing}, false), ExitError)
	if err := checkOutputs([]string{existing}, true); err != nil {
		t.Errorf("force: %v", err)
	}
	if err := checkOutputs([]string{fresh}, false); err != nil {
		t.Errorf("fresh: %v", err)
	}
	assertExitCode(t, checkOutputs([]string{fresh, dir + "/./b.ksig"}, true), ExitError)
}

func TestWriteNew(t *testing.T) {
	p := filepath.Join(t.TempDir(), "s.ksig")
	if err := writeNew(p, []byte("one"), false); err != nil {
		t.Fatal(err)
	}
	if err := writeNew(p, []byte("two"), false); err == nil {
		t.Error("overwrote without force")
	}
	if err := writeNew(p, []byte("three"), true); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "three" {
		t.Errorf("content %q", b)
	}
	if m, _ := filepath.Glob(filepath.Join(filepath.Dir(p), ".*.tmp")); len(m) > 0 {
		t.Errorf("temporary files left: %v", m)
	}
}

func TestChooseTarget(t *testing.T) {
	h := make([]byte, 33)
	h[0] = byte(ksi.SHA2_256)
	rec := func(tm uint64) *ksi.PublicationRecord {
		r, err := ksi.NewPublicationRecord(ksi.TypePublicationRecord, ksi.NewPublishedData(tm, ksi.Imprint(h)), []string{"ref"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	pf := &ksi.PublicationsFile{Publications: []*ksi.PublicationRecord{rec(100), rec(110), rec(105), rec(50)}}

	tg, err := chooseTarget(pf, nil, 0, false)
	if err != nil || tg.rec.Data.Time != 110 || !tg.newest || tg.period != 5 {
		t.Errorf("newest: %+v, %v", tg, err)
	}
	if tg, err = chooseTarget(pf, nil, 105, true); err != nil || tg.rec.Data.Time != 105 || tg.newest {
		t.Errorf("--time 105: %+v, %v", tg, err)
	}
	_, err = chooseTarget(pf, nil, 101, true)
	assertExitCode(t, err, ExitError)

	// A string in the file takes the file's record (with its references).
	pd := pf.Publications[0].Data
	if tg, err = chooseTarget(pf, &pd, 0, false); err != nil || len(tg.rec.References) != 1 {
		t.Errorf("--pub-str in file: %+v, %v", tg, err)
	}
	// Not in the file (or no file): a bare record.
	other := ksi.NewPublishedData(200, ksi.Imprint(h))
	if tg, err = chooseTarget(nil, &other, 0, false); err != nil || tg.rec.Data.Time != 200 || len(tg.rec.References) != 0 {
		t.Errorf("--pub-str alone: %+v, %v", tg, err)
	}
	// The file disagrees with the string: refuse both.
	h2 := append([]byte(nil), h...)
	h2[1] = 1
	clash := ksi.NewPublishedData(100, ksi.Imprint(h2))
	_, err = chooseTarget(pf, &clash, 0, false)
	assertExitCode(t, err, ExitError)

	_, err = chooseTarget(&ksi.PublicationsFile{}, nil, 0, false)
	assertExitCode(t, err, ExitInconclusive)
}

func TestPollPublicationsFileRetriesReads(t *testing.T) {
	// A file that cannot be read is retried until the wait is over (a
	// server may be restarting), then the read error is reported.
	missing := trustOptions{pubfile: filepath.Join(t.TempDir(), "nosuch.bin"), noVerify: true}
	start := time.Now()
	_, err := pollPublicationsFile(t.Context(), missing, 0, 0, false)
	if err == nil || !retryable(err) || time.Since(start) > time.Second {
		t.Errorf("no wait: %v after %s", err, time.Since(start))
	}
	start = time.Now()
	_, err = pollPublicationsFile(t.Context(), missing, 1200*time.Millisecond, 5, true)
	if err == nil || !retryable(err) || time.Since(start) < 500*time.Millisecond {
		t.Errorf("wait: %v after %s", err, time.Since(start))
	}
	// A file that is not a publications file is not retried.
	junk := filepath.Join(t.TempDir(), "junk.bin")
	if err := os.WriteFile(junk, []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	_, err = pollPublicationsFile(t.Context(), trustOptions{pubfile: junk, noVerify: true}, 5*time.Second, 5, true)
	if err == nil || retryable(err) || time.Since(start) > time.Second {
		t.Errorf("junk: %v after %s", err, time.Since(start))
	}
}
