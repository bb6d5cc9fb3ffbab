package concurrency

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/flotilla-kv/flotilla/router"
)

// The queue under a prefix
//
// A Mutex and an Election are the same queue: each contender writes its
// own key, prefix + "/" + its lease ID in hex, attached to its session's
// lease. Keys are created in revision order, so the keys under the prefix,
// sorted by CreateRevision, are the queue; its head holds the lock (leads).
// A contender waits for the key just ahead of it, the one with the
// greatest CreateRevision below its own, to be deleted, by a watch from
// the revision it read the queue at; then it reads the queue again, since
// the key it waited for may have left before the head did. Each waiter
// watches one key, so a release wakes one waiter, not every one.

// contenderKey returns the key of lease under pfx (which ends with "/").
func contenderKey(pfx []byte, lease uint64) []byte {
	return fmt.Appendf(bytes.Clone(pfx), "%016x", lease)
}

// queuePrefix returns prefix + "/", the span of a queue's keys.
func queuePrefix(prefix string) []byte { return []byte(prefix + "/") }

// prefixEnd returns the first key after every key starting with p.
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil // p is all 0xff: to the end of the key space
}

// enqueue writes key with value attached to s's lease and returns the
// key's CreateRevision: that of this write, or of an earlier one of the
// same session, whose place in the queue it keeps. A lease that ended is
// ErrSessionExpired.
func enqueue(ctx context.Context, s *Session, key, value []byte) (uint64, error) {
	c := s.client
	res, err := c.PutLease(ctx, key, value, s.id)
	if err != nil {
		if errors.Is(err, router.ErrLeaseNotFound) {
			return 0, fmt.Errorf("%w: %w", ErrSessionExpired, err)
		}
		return 0, err
	}
	got, err := c.GetAt(ctx, key, res.Revision)
	if err != nil {
		return 0, err
	}
	if !got.Found || got.KV.Lease != s.id {
		// The lease ended right after the put (its keys read as absent
		// from then on).
		return 0, ErrSessionExpired
	}
	return got.KV.CreateRevision, nil
}

// errQueued: tryTurn found a key ahead of the caller's.
var errQueued = errors.New("concurrency: a key is ahead in the queue")

// waitTurn returns once key, of CreateRevision rev, heads the queue under
// pfx, with the revision at which it was read to: from then on no key
// ahead of it exists. With try it returns errQueued instead of waiting.
// ErrSessionExpired if key left the queue (its lease ended) or s's
// session ended while waiting.
func waitTurn(ctx context.Context, s *Session, pfx, key []byte, rev uint64, try bool) (uint64, error) {
	// Waiting ends with the session: its key is gone, so the one ahead
	// may never be deleted for it.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(s.ctx, func() { cancel(ErrSessionExpired) })
	defer stop()
	for {
		q, err := s.client.ScanAt(ctx, pfx, prefixEnd(pfx), 0, 0)
		if err != nil {
			return 0, causeOf(ctx, err)
		}
		var mine, ahead *router.KeyValue
		for i := range q.KVs {
			kv := &q.KVs[i]
			switch {
			case bytes.Equal(kv.Key, key):
				mine = kv
			case kv.CreateRevision < rev && (ahead == nil || kv.CreateRevision > ahead.CreateRevision):
				ahead = kv
			}
		}
		if mine == nil || mine.CreateRevision != rev {
			return 0, ErrSessionExpired
		}
		if ahead == nil {
			return q.Revision, nil
		}
		if try {
			return 0, errQueued
		}
		if err := waitDelete(ctx, s.client, ahead.Key, q.Revision+1); err != nil {
			return 0, causeOf(ctx, err)
		}
	}
}

// causeOf returns ctx's cause when ctx ended (ErrSessionExpired, or the
// caller's context's error), else err.
func causeOf(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil {
		return cause
	}
	return err
}

// waitDelete waits until key is deleted at or after revision from.
func waitDelete(ctx context.Context, c *router.Client, key []byte, from uint64) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	end := append(bytes.Clone(key), 0)
	for resp := range c.Watch(ctx, key, end, router.WithStartRevision(from)) {
		if resp.Err != nil {
			return resp.Err
		}
		for _, ev := range resp.Events {
			if ev.Type == router.EventDelete {
				return nil
			}
		}
	}
	return ctx.Err()
}

// dequeue deletes key without the caller's context: a contender that gave
// up, or whose put may or may not have applied, must not stay in the queue
// holding the others up until its lease ends. It waits at most the
// session's TTL, after which the lease would have removed the key anyway
// had the session ended.
func dequeue(ctx context.Context, s *Session, key []byte) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.ttlDuration())
	defer cancel()
	_, _ = s.client.DeleteIfLease(ctx, key, s.id)
}
