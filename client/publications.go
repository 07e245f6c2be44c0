package client

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/tempel-ksi/tempel/ksi"
	tempelv1 "github.com/tempel-ksi/tempel/proto/tempel/v1"
	"github.com/tempel-ksi/tempel/verifier"
)

// Defaults of [PublicationsTrust].
const (
	DefaultPublicationsRefresh = time.Hour
	DefaultPublicationsMaxAge  = 24 * time.Hour
	// publicationsRetryPause is the longest a failed refresh keeps the
	// next one from starting; meanwhile the last good file is served at
	// once instead of every caller waiting for an endpoint that is down.
	publicationsRetryPause = time.Minute
)

// PublicationsTrust says which publications files [Client.Publications]
// believes and how long it keeps one.
type PublicationsTrust struct {
	// Roots are the root certificates the file's signer must chain to,
	// and the signer's certificate must meet every one of Constraints
	// (at least one, e.g. E=publications@example.org; see
	// [verifier.ParseConstraint]). Without both, Publications refuses.
	Roots       *x509.CertPool
	Constraints []verifier.Constraint
	// Refresh is the age at which the cached file is fetched again
	// (default 1h).
	Refresh time.Duration
	// MaxAge is how long after it was fetched a file is still served
	// while refreshes fail (default 24h, at least Refresh). Past it,
	// Publications fails until a fetch succeeds.
	MaxAge time.Duration
}

// ErrNoPublicationsTrust: [Client.Publications] was called without trust
// roots or constraints in Config.PublicationsTrust. Configure them; a
// publications file nobody checked is never handed out.
var ErrNoPublicationsTrust = errors.New("client: no publications file trust configured (Config.PublicationsTrust needs Roots and at least one constraint)")

// pubCache is the client's verified publications file.
type pubCache struct {
	trust PublicationsTrust
	clock atomic.Pointer[func() time.Time] // time.Now; tests set another

	mu       sync.Mutex
	file     *ksi.PublicationsFile
	fetched  time.Time // when file was fetched and verified
	retryAt  time.Time // after a failed refresh, none starts before this
	inflight *pubFetch // the fetch under way, shared by its callers
}

// pubFetch is one fetch; done is closed when file or err is set.
type pubFetch struct {
	done chan struct{}
	file *ksi.PublicationsFile
	err  error
}

func (p *pubCache) init(t PublicationsTrust) {
	if t.Refresh <= 0 {
		t.Refresh = DefaultPublicationsRefresh
	}
	if t.MaxAge <= 0 {
		t.MaxAge = DefaultPublicationsMaxAge
	}
	t.MaxAge = max(t.MaxAge, t.Refresh)
	p.trust = t
	now := time.Now
	p.clock.Store(&now)
}

func (p *pubCache) now() time.Time { return (*p.clock.Load())() }

// Publications returns the publications file of the endpoints, verified
// against Config.PublicationsTrust at the time of the fetch (its detached
// PKCS#7 signature, the signer's chain to Roots and the constraints).
// A bad or untrusted file from one endpoint loses to a good one from
// another ([Config.Endpoints]).
//
// The file is cached: it is fetched again when it is older than
// PublicationsTrust.Refresh, by the first caller that notices; the
// callers meanwhile wait for that one fetch. When a refresh fails, the
// last good file is returned until it is older than MaxAge (for up to a
// minute after a failure no new fetch is tried, and it is returned at
// once); then Publications fails with the fetch's error.
//
// Use the result as [verifier.Options].PublicationsFile, and its
// publications with [Client.Extend].
func (c *Client) Publications(ctx context.Context) (*ksi.PublicationsFile, error) {
	p := &c.pubs
	if p.trust.Roots == nil || len(p.trust.Constraints) == 0 {
		return nil, ErrNoPublicationsTrust
	}
	p.mu.Lock()
	age := p.now().Sub(p.fetched)
	usable := p.file != nil && age < p.trust.MaxAge
	if p.file != nil && age < p.trust.Refresh || usable && p.now().Before(p.retryAt) {
		f := p.file
		p.mu.Unlock()
		return f, nil
	}
	fl := p.inflight
	if fl == nil {
		fl = &pubFetch{done: make(chan struct{})}
		p.inflight = fl
		// The fetch serves every caller waiting for it, so the first
		// caller's cancellation must not end it; its attempts are bounded
		// by Config.Timeout and Retries.
		go c.refreshPublications(context.WithoutCancel(ctx), fl)
	}
	p.mu.Unlock()

	select {
	case <-fl.done:
	case <-ctx.Done():
		return nil, fmt.Errorf("client: publications file: %w", ctx.Err())
	}
	if fl.err == nil {
		return fl.file, nil
	}
	p.mu.Lock()
	f, fetched := p.file, p.fetched
	p.mu.Unlock()
	switch age := p.now().Sub(fetched); {
	case f == nil:
		return nil, fl.err
	case age < p.trust.MaxAge:
		return f, nil
	default:
		return nil, fmt.Errorf("client: publications file: the last good one is %s old, more than the %s allowed, and fetching a new one failed: %w",
			age.Round(time.Second), p.trust.MaxAge, fl.err)
	}
}

// refreshPublications runs fl and records its outcome in the cache.
func (c *Client) refreshPublications(ctx context.Context, fl *pubFetch) {
	fl.file, fl.err = c.fetchPublications(ctx)
	p := &c.pubs
	p.mu.Lock()
	now := p.now()
	if fl.err == nil {
		p.file, p.fetched, p.retryAt = fl.file, now, time.Time{}
	} else {
		p.retryAt = now.Add(min(p.trust.Refresh, publicationsRetryPause))
	}
	p.inflight = nil
	p.mu.Unlock()
	close(fl.done)
}

// fetchPublications fetches the file; an endpoint's answer wins only if
// it verifies.
func (c *Client) fetchPublications(ctx context.Context) (*ksi.PublicationsFile, error) {
	trusted := func(m proto.Message) error {
		pf, err := ksi.ParsePublicationsFile(m.(*tempelv1.PublicationsFile).Content)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrBadResponse, err)
		}
		return c.pubs.verify(pf)
	}
	var resp *tempelv1.PublicationsFile
	err := c.callChecked(ctx, "publications file", trusted, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = tempelv1.NewPublicationsClient(cc).GetPublicationsFile(ctx, &tempelv1.GetPublicationsFileRequest{},
			grpc.MaxCallRecvMsgSize(ksi.MaxPublicationsFileSize+1<<10))
		return err
	})
	if err != nil {
		return nil, err
	}
	// The winner passed trusted; parsing it again is cheaper than
	// carrying the parsed file out of the concurrent checks.
	pf, err := ksi.ParsePublicationsFile(resp.Content)
	if err != nil {
		return nil, fmt.Errorf("%w: publications file: %w", ErrBadResponse, err)
	}
	return pf, nil
}

func (p *pubCache) verify(pf *ksi.PublicationsFile) error {
	return verifier.VerifyPublicationsFile(pf, verifier.Trust{Roots: p.trust.Roots, Constraints: p.trust.Constraints, Time: p.now()})
}
