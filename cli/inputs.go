package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	ucli "github.com/urfave/cli/v2"
)

// Flags that name many inputs at once, shared by sign, verify and extend.
const (
	flagRecursive = "recursive"
	flagFromList  = "from-list"
	flagWorkers   = "workers"
)

// maxInputs bounds the number of files one command takes (arguments,
// directory walks and lists together): every input costs memory for its
// path and result until the summary, and a runaway list (a device, a
// typo naming a huge log) must end in a clear error, not an exhausted
// machine.
const maxInputs = 1_000_000

// maxListLine bounds one line of a --from-list file; no path is longer.
const maxListLine = 64 << 10

// inputFlags are the flags naming the inputs of a bulk command; what
// names the directory entries to take differs by command (documents or
// signatures).
func inputFlags(what string) []ucli.Flag {
	return []ucli.Flag{
		&ucli.BoolFlag{Name: flagRecursive, Aliases: []string{"r"}, Usage: "take the " + what + " in every directory given, recursively"},
		&ucli.StringFlag{Name: flagFromList, Usage: "read more " + what + " from `FILE`, one path per line (- for standard input)"},
		&ucli.IntFlag{Name: flagWorkers, Usage: "files processed in parallel, `N` ≥ 1 (default: the number of CPUs)"},
	}
}

// inputs are the files a bulk command works on, in the order given (a
// directory's files in lexical order), each once.
type inputs struct {
	paths []string
	// bulk is set when more than one file may be meant: several paths,
	// -r or --from-list. Bulk runs print a summary instead of a report
	// per file.
	bulk bool
}

// walkFilter decides which files of a walked directory are inputs.
type walkFilter func(name string) bool

// collectInputs expands the positional arguments, directories (with -r)
// and --from-list into the list of files. A directory without -r is an
// error that says how to take its files, as is anything that is neither a
// file nor a directory.
func collectInputs(c *ucli.Context, args []string, take walkFilter) (inputs, error) {
	in := inputs{bulk: len(args) > 1 || c.Bool(flagRecursive) || c.IsSet(flagFromList)}
	seen := make(map[string]bool)
	add := func(p string) error {
		if seen[p] {
			return nil
		}
		if len(in.paths) >= maxInputs {
			return usageErrorf("more than %d inputs: split the work into several runs", maxInputs)
		}
		seen[p] = true
		in.paths = append(in.paths, p)
		return nil
	}
	expand := func(p string) error {
		if p == "-" {
			return add(p)
		}
		fi, err := os.Stat(p)
		if err != nil || !fi.IsDir() {
			// A missing or unreadable file is reported with that file's
			// result, so that one bad name does not stop the others.
			return add(p)
		}
		if !c.Bool(flagRecursive) {
			return usageErrorf("%s is a directory: add -r to take the files in it", p)
		}
		return walkFiles(p, take, add)
	}
	for _, a := range args {
		if err := expand(a); err != nil {
			return in, err
		}
	}
	if list := c.String(flagFromList); list != "" {
		if err := readList(list, expand); err != nil {
			return in, err
		}
	}
	return in, nil
}

// walkFiles calls add for every regular file under dir that take accepts,
// in lexical order. Symbolic links to files are followed; links to
// directories are not (a loop would never end).
func walkFiles(dir string, take walkFilter, add func(string) error) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return inputErrorf("cannot read directory: %v", err)
		}
		if d.IsDir() || !take(d.Name()) {
			return nil
		}
		if d.Type()&fs.ModeSymlink != 0 {
			if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
				return nil
			}
		} else if !d.Type().IsRegular() {
			return nil
		}
		return add(p)
	})
}

// readList reads one path per line from the file name ("-": standard
// input). Blank lines are skipped; a trailing CR (lists written on
// Windows) is dropped, other spaces are part of the name.
func readList(name string, add func(string) error) error {
	var r io.Reader = os.Stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return inputErrorf("cannot read the list of files: %v", err)
		}
		defer f.Close()
		r = f
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxListLine)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSuffix(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		if line == "-" {
			return usageErrorf("--%s %s, line %d: standard input cannot be one of the files", flagFromList, name, n)
		}
		if err := add(line); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return inputErrorf("cannot read the list of files %s: %v", name, err)
	}
	return nil
}

// isSignatureName reports whether a file name is a signature, which a
// walk for documents skips: signing a signature is never what was meant.
func isSignatureName(name string) bool { return strings.HasSuffix(name, sigSuffix) }

// isTempName reports whether a file is one of the temporary files that
// [writeAtomic] leaves only if it is killed.
func isTempName(name string) bool {
	return strings.HasPrefix(name, ".") && strings.HasSuffix(name, ".tmp")
}

// documentFiles takes the documents of a walked directory: not their
// signatures, tokens or containers.
func documentFiles(name string) bool {
	return !isSignatureName(name) && !isTokenName(name) && !isASiCName(name) && !isTempName(name)
}

// signatureFiles takes the signatures of a walked directory that have not
// been extended yet (an extended one's name ends in [extSuffix]), RFC 3161
// tokens and ASiC-S containers among them (their extended forms end in
// .ext.tsr, .ext.tst, .ext.asics).
func signatureFiles(name string) bool {
	if isTempName(name) {
		return false
	}
	return isSignatureName(name) && !strings.HasSuffix(name, extSuffix) || (isTokenName(name) || isASiCName(name)) && !isExtendedToken(name)
}

// workerCount returns the --workers value, defaulting to GOMAXPROCS.
func workerCount(c *ucli.Context) (int, error) {
	if !c.IsSet(flagWorkers) {
		return runtime.GOMAXPROCS(0), nil
	}
	n := c.Int(flagWorkers)
	if n < 1 || n > 1024 {
		return 0, usageErrorf("--%s %d: must be between 1 and 1024", flagWorkers, n)
	}
	return n, nil
}

// parallel runs f(i) for i in [0, n) on at most workers goroutines and
// returns when all are done or ctx is cancelled (the remaining indexes
// are then not run). Each f writes only its own result slot, so no
// locking is needed by the callers.
func parallel(ctx context.Context, n, workers int, f func(i int)) {
	if workers > n {
		workers = n
	}
	var next sync.Mutex
	i := 0
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				next.Lock()
				k := i
				i++
				next.Unlock()
				if k >= n {
					return
				}
				f(k)
			}
		}()
	}
	wg.Wait()
}

// outputUnder maps an input path to its place under dir, keeping the
// tree: a/b.txt goes to DIR/a/b.txt, /abs/c.txt to DIR/abs/c.txt. A path
// that climbs out of the current directory (../x) has no place that
// keeps the tree, and is refused.
func outputUnder(dir, p string) (string, error) {
	rel := filepath.Clean(p)
	if filepath.IsAbs(rel) {
		rel = strings.TrimLeft(strings.TrimPrefix(rel, filepath.VolumeName(rel)), string(filepath.Separator))
	}
	if rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("%s is outside the current directory, so its place under -o %s is unclear: run from a directory above it", p, dir)
	}
	return filepath.Join(dir, rel), nil
}
