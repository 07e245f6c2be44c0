package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// fetchTimeout bounds a whole download (connect, headers and body) of a
// publications file. The production file is about 100 KB; a minute is
// generous even on a bad line, and a hung server must not hang a script.
const fetchTimeout = 60 * time.Second

// errTooLarge is returned when an input exceeds its size limit.
var errTooLarge = errors.New("larger than the accepted size")

// isURL reports whether src names an http(s) or file URL rather than a
// local path.
func isURL(src string) bool {
	for _, p := range []string{"http://", "https://", "file://"} {
		if len(src) >= len(p) && strings.EqualFold(src[:len(p)], p) {
			return true
		}
	}
	return false
}

// readSource returns the content of a local file, or of an http(s) or
// file URL (file URLs are what ksi-tool users write: -P file:///path),
// reading at most limit bytes.
func readSource(ctx context.Context, client *http.Client, src string, limit int64) ([]byte, error) {
	if !isURL(src) {
		return readFileLimited(src, limit)
	}
	u, err := url.Parse(src)
	if err != nil {
		return nil, err
	}
	if strings.EqualFold(u.Scheme, "file") {
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("file URL %q names host %q; only local files can be read", src, u.Host)
		}
		return readFileLimited(u.Path, limit)
	}
	return fetch(ctx, client, u.String(), limit)
}

// readFileLimited reads a file of at most limit bytes. The limit is
// checked while reading, so a huge or endless file (a device, a FIFO)
// cannot exhaust memory.
func readFileLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readLimited(f, path, limit)
}

func readLimited(r io.Reader, name string, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: %w (%d bytes)", name, errTooLarge, limit)
	}
	return b, nil
}

// fetch downloads url with GET. A nil client means a default client with
// [fetchTimeout]. Anything but 200 OK is an error.
func fetch(ctx context.Context, client *http.Client, url string, limit int64) ([]byte, error) {
	if client == nil {
		client = &http.Client{Timeout: fetchTimeout}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	if resp.ContentLength > limit {
		return nil, fmt.Errorf("GET %s: %w (%d bytes, server announces %d)", url, errTooLarge, limit, resp.ContentLength)
	}
	return readLimited(resp.Body, "GET "+url, limit)
}
