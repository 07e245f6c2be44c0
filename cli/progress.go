package cli

import (
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	ucli "github.com/urfave/cli/v2"
	"golang.org/x/term"
)

// Below these amounts an operation ends before a person wonders whether
// it hangs, and a bar would only flicker.
const (
	progressMinFiles = 20
	progressMinBytes = 64 << 20
)

// progressRedraw bounds how often a bar is redrawn: redrawing for every
// file of ten thousand would flood a slow terminal (a remote shell) and
// cost more than the work it reports.
const progressRedraw = 100 * time.Millisecond

// bar is a progress bar on standard error, or nil where none is drawn.
// Its methods do nothing on nil, so callers need no checks, and are safe
// for concurrent use (the workers of a bulk command share one).
type bar struct{ pb *progressbar.ProgressBar }

// showProgress reports whether a bar is wanted: only for people, so only
// when both standard output and standard error are terminals. Piped or
// redirected output (a log, a script, --json into jq) gets none.
func showProgress(c *ucli.Context) bool {
	return isTerminal(c.App.Writer) && isTerminal(c.App.ErrWriter)
}

// newFilesBar returns a bar counting n files, labelled with what is done
// to them ("signing"), or nil when n is small or no bar is wanted.
func newFilesBar(c *ucli.Context, what string, n int) *bar {
	if n < progressMinFiles || !showProgress(c) {
		return nil
	}
	return newBar(c.App.ErrWriter, what, int64(n), false)
}

// newBytesBar returns a bar counting total bytes, or nil when the total
// is small or no bar is wanted.
func newBytesBar(c *ucli.Context, what string, total int64) *bar {
	if total < progressMinBytes || !showProgress(c) {
		return nil
	}
	return newBar(c.App.ErrWriter, what, total, true)
}

func newBar(w io.Writer, what string, max int64, bytes bool) *bar {
	opts := []progressbar.Option{
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(what),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(progressRedraw),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true),
		// The summary line follows; a finished bar would repeat it.
		progressbar.OptionClearOnFinish(),
	}
	if bytes {
		opts = append(opts, progressbar.OptionShowBytes(true))
	} else {
		opts = append(opts, progressbar.OptionShowIts(), progressbar.OptionSetItsString("files"))
	}
	return &bar{pb: progressbar.NewOptions64(max, opts...)}
}

// add counts n more files (or bytes) done.
func (b *bar) add(n int) {
	if b != nil {
		_ = b.pb.Add(n)
	}
}

// Write counts bytes passing through an io.TeeReader.
func (b *bar) Write(p []byte) (int, error) {
	b.add(len(p))
	return len(p), nil
}

// done erases the bar, so that what follows starts on a clean line.
func (b *bar) done() {
	if b != nil {
		_ = b.pb.Finish()
		_ = b.pb.Clear()
	}
}

// isTerminal reports whether w is a terminal (not a file, a pipe or
// /dev/null).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
