package concurrency

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/flotilla-kv/flotilla/router"
)

// DefaultSessionTTL is the TTL of a session's lease when
// SessionOptions.TTL is 0.
const DefaultSessionTTL = 60 * time.Second

// ErrSessionExpired: the session's lease ended (it expired, was revoked,
// or the session was closed) while a call needed it; whatever the session
// held under it is lost.
var ErrSessionExpired = errors.New("concurrency: session expired")

// SessionOptions configures NewSession. The zero value is valid and means
// a fresh lease of DefaultSessionTTL.
type SessionOptions struct {
	// TTL is the lease's time to live, rounded up to whole seconds
	// (default DefaultSessionTTL; the fleet raises a TTL below its minimum).
	// It is how long a holder that stopped (crashed, partitioned from the
	// lease's home) keeps others waiting; a shorter TTL hands its locks
	// over sooner, but a holder whose keepalives are delayed by more than
	// it loses them although it is still running. Ignored with Lease.
	TTL time.Duration
	// Lease, when not 0, is an existing lease for the session to adopt:
	// it keeps it alive and revokes it on Close. 0, the default, grants a
	// fresh one.
	Lease uint64
}

// Validate reports every problem of o at once.
func (o SessionOptions) Validate() error {
	var errs []error
	if o.TTL < 0 {
		errs = append(errs, fmt.Errorf("concurrency: session TTL %s is negative", o.TTL))
	}
	return errors.Join(errs...)
}

// ttlSeconds returns the TTL to ask for, in whole seconds rounded up.
func (o SessionOptions) ttlSeconds() int64 {
	ttl := o.TTL
	if ttl == 0 {
		ttl = DefaultSessionTTL
	}
	return int64((ttl + time.Second - 1) / time.Second)
}

// Session is a lease kept alive in the background: the liveness every
// Mutex and Election built on it depends on. Its keys are attached to the
// lease, so they are deleted when the lease ends, whoever ends it.
//
// A Session's methods may be called from any goroutine.
type Session struct {
	client *router.Client
	id     uint64
	ttl    int64 // seconds, as granted

	cancel context.CancelFunc // stops the keepalives
	done   chan struct{}      // closed once the keepalives stopped
	ctx    context.Context    // ends when done closes

	closeOnce sync.Once
	closeErr  error
}

// NewSession grants a lease (or adopts opts.Lease) and keeps it alive
// until Close, or until it cannot be kept alive any more (Done closes).
// ctx bounds the grant only (the first keepalive is bounded by the
// router's Config.Timeout); the session outlives it. The caller owns the
// Session and must Close (or Orphan) it. Errors: an invalid opts,
// router.ErrLeaseNotFound for an adopted lease that does not exist, or the
// error of the grant or first keepalive.
func NewSession(ctx context.Context, client *router.Client, opts SessionOptions) (*Session, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	s := &Session{client: client, id: opts.Lease, ttl: opts.ttlSeconds(), done: make(chan struct{})}
	granted := false
	if s.id == 0 {
		g, err := client.Grant(ctx, s.ttl)
		if err != nil {
			return nil, err
		}
		s.id, s.ttl, granted = g.ID, g.TTL, true
	}
	// The keepalives run until Close, whatever becomes of ctx.
	kctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	ch, err := client.KeepAlive(kctx, s.id)
	if err != nil {
		cancel()
		if granted {
			rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), s.ttlDuration())
			_, _ = client.Revoke(rctx, s.id)
			rcancel()
		}
		return nil, err
	}
	s.cancel = cancel
	if first, ok := <-ch; ok && first.TTL > 0 {
		s.ttl = first.TTL // an adopted lease's TTL, as its home reports it
	}
	var lost context.CancelFunc
	s.ctx, lost = context.WithCancel(context.Background())
	go func() {
		defer lost()
		defer close(s.done)
		for range ch {
		}
	}()
	return s, nil
}

func (s *Session) ttlDuration() time.Duration { return time.Duration(s.ttl) * time.Second }

// Client returns the router the session was made with.
func (s *Session) Client() *router.Client { return s.client }

// Lease returns the session's lease ID.
func (s *Session) Lease() uint64 { return s.id }

// TTL returns the lease's TTL as granted (for an adopted lease, as its
// first keepalive reported it).
func (s *Session) TTL() time.Duration { return s.ttlDuration() }

// Done returns a channel closed once the session stopped keeping its lease
// alive: it was closed or orphaned, or a keepalive found the lease gone, or
// none succeeded before the lease would have expired. From then on every
// lock and leadership of the session must be taken as lost. Done closes no
// earlier than the lease ends on its home, possibly later (see the package
// documentation).
func (s *Session) Done() <-chan struct{} { return s.done }

// Orphan stops the keepalives without revoking the lease: it ends after
// its TTL, and with it the session's keys. Done closes.
func (s *Session) Orphan() {
	s.cancel()
	<-s.done
}

// Close stops the keepalives and revokes the lease, which deletes every key
// of the session (its locks are released, its campaigns resigned) before
// Close returns. It waits at most the lease's TTL for the revoke; a lease
// that already ended is not an error. Close may be called more than once;
// the later calls return what the first returned.
func (s *Session) Close() error {
	s.closeOnce.Do(func() {
		s.Orphan()
		ctx, cancel := context.WithTimeout(context.Background(), s.ttlDuration())
		defer cancel()
		if _, err := s.client.Revoke(ctx, s.id); err != nil && !errors.Is(err, router.ErrLeaseNotFound) {
			s.closeErr = err
		}
	})
	return s.closeErr
}
