package concurrency

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/flotilla-kv/flotilla/router"
)

// ErrElectionNoLeader: Leader found no candidate under the prefix.
var ErrElectionNoLeader = errors.New("concurrency: election has no leader")

// ErrElectionNotLeader: Proclaim by an Election that does not lead (it did
// not campaign, resigned, or lost its key).
var ErrElectionNotLeader = errors.New("concurrency: not the election's leader")

// Election is a leader election among the sessions that make an Election
// of the same prefix: the candidates queue as a Mutex's contenders do, and
// the head leads, its key's value being what it proclaims. Leadership is
// held by the session's lease, with the same obligations as a Mutex: stop
// leading when Session.Done closes, and fence with Revision.
//
// An Election is used by one goroutine at a time, except Leader and
// Observe, which may be called from any goroutine.
type Election struct {
	s   *Session
	pfx []byte
	// key and rev are the leader's key and its CreateRevision while e
	// leads; unset otherwise.
	key []byte
	rev uint64
}

// NewElection returns an Election of s over prefix. It writes nothing
// until Campaign.
func NewElection(s *Session, prefix string) *Election {
	return &Election{s: s, pfx: queuePrefix(prefix)}
}

// Campaign waits until e's session leads, proclaiming value, and returns
// nil once it does. A session that campaigned before (another Election
// of the same prefix) keeps its place and changes its value. When ctx ends
// or the session expires first, it withdraws and returns ctx's error or
// ErrSessionExpired.
func (e *Election) Campaign(ctx context.Context, value []byte) error {
	key := contenderKey(e.pfx, e.s.id)
	rev, err := enqueue(ctx, e.s, key, value)
	if err != nil {
		dequeue(ctx, e.s, key)
		return err
	}
	if _, err := waitTurn(ctx, e.s, e.pfx, key, rev, false /* try */); err != nil {
		dequeue(ctx, e.s, key)
		return err
	}
	e.key, e.rev = key, rev
	return nil
}

// Proclaim changes the leader's value without an election. ErrElectionNotLeader
// if e does not lead (its key is gone: deleted, or its lease ended).
//
// The router has no put that is both leased and conditional, so Proclaim
// puts and then checks that the key it wrote is the one it leads with; a
// key deleted in between is written anew for a moment, then removed.
func (e *Election) Proclaim(ctx context.Context, value []byte) error {
	if e.key == nil {
		return ErrElectionNotLeader
	}
	res, err := e.s.client.PutLease(ctx, e.key, value, e.s.id)
	if errors.Is(err, router.ErrLeaseNotFound) {
		e.key, e.rev = nil, 0
		return fmt.Errorf("%w: %w", ErrElectionNotLeader, err)
	}
	if err != nil {
		return err
	}
	got, err := e.s.client.GetAt(ctx, e.key, res.Revision)
	if err != nil {
		return err
	}
	if !got.Found || got.KV.CreateRevision != e.rev {
		if got.Found {
			dequeue(ctx, e.s, e.key) // the key we just created anew
		}
		e.key, e.rev = nil, 0
		return ErrElectionNotLeader
	}
	return nil
}

// Resign gives up leadership, or does nothing if e does not lead: it
// deletes the session's key, which hands leadership to the next
// candidate.
func (e *Election) Resign(ctx context.Context) error {
	if e.key == nil {
		return nil
	}
	if _, err := e.s.client.DeleteIfLease(ctx, e.key, e.s.id); err != nil {
		return err
	}
	e.key, e.rev = nil, 0
	return nil
}

// Key returns e's key while it leads, nil otherwise. The caller owns it.
func (e *Election) Key() []byte { return bytes.Clone(e.key) }

// Revision returns the fencing revision of e's leadership, the
// CreateRevision of its key (0 while it does not lead); see
// Mutex.Revision.
func (e *Election) Revision() uint64 { return e.rev }

// Leader returns the current leader's key: its Value is the proclaimed
// value, its CreateRevision the leadership's fencing revision.
// ErrElectionNoLeader if no candidate is queued. The caller owns the
// result.
func (e *Election) Leader(ctx context.Context) (router.KeyValue, error) {
	q, err := e.s.client.ScanAt(ctx, e.pfx, prefixEnd(e.pfx), 0, 0)
	if err != nil {
		return router.KeyValue{}, err
	}
	head, ok := queueHead(q.KVs)
	if !ok {
		return router.KeyValue{}, ErrElectionNoLeader
	}
	return head, nil
}

// queueHead returns the key of least CreateRevision.
func queueHead(kvs []router.KeyValue) (router.KeyValue, bool) {
	var head router.KeyValue
	found := false
	for _, kv := range kvs {
		if !found || kv.CreateRevision < head.CreateRevision {
			head, found = kv, true
		}
	}
	return head, found
}

// Observe returns a channel of the leaders, in order: the current one
// (if any) first, then each new leader and each new value a leader
// proclaims. It reads the queue once and then follows it with one watch
// of the prefix (again after a watch fails with *router.CompactedError).
// The channel closes when ctx ends or the router fails in a way no retry
// helps (its error is not reported; call Leader to see
// it). The caller must read the channel until it closes or end ctx; it
// owns what it receives.
func (e *Election) Observe(ctx context.Context) <-chan router.KeyValue {
	out := make(chan router.KeyValue)
	go func() {
		defer close(out)
		e.observe(ctx, out)
	}()
	return out
}

// observe sends to out each change of leader or of its value.
func (e *Election) observe(ctx context.Context, out chan<- router.KeyValue) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c := e.s.client
	var last router.KeyValue // the leader last sent (ModRevision 0: none)
	for ctx.Err() == nil {
		q, err := c.ScanAt(ctx, e.pfx, prefixEnd(e.pfx), 0, 0)
		if err != nil {
			return
		}
		queue := make(map[string]router.KeyValue, len(q.KVs))
		for _, kv := range q.KVs {
			queue[string(kv.Key)] = kv
		}
		send := func() bool {
			head, ok := queueHead(mapValues(queue))
			if !ok || (bytes.Equal(head.Key, last.Key) && head.ModRevision == last.ModRevision) {
				return true
			}
			select {
			case out <- head:
				last = head
				return true
			case <-ctx.Done():
				return false
			}
		}
		if !send() {
			return
		}
		wctx, wcancel := context.WithCancel(ctx)
		for resp := range c.Watch(wctx, e.pfx, prefixEnd(e.pfx), router.WithStartRevision(q.Revision+1)) {
			if resp.Err != nil {
				var compacted *router.CompactedError
				if !errors.As(resp.Err, &compacted) {
					wcancel()
					return // ctx ended, or no retry helps
				}
				break // the queue moved past the watch's start: read it again
			}
			for _, ev := range resp.Events {
				if ev.Type == router.EventDelete {
					delete(queue, string(ev.KV.Key))
				} else {
					queue[string(ev.KV.Key)] = ev.KV
				}
			}
			if !send() {
				break
			}
		}
		wcancel()
	}
}

func mapValues(m map[string]router.KeyValue) []router.KeyValue {
	vs := make([]router.KeyValue, 0, len(m))
	for _, kv := range m {
		vs = append(vs, kv)
	}
	return vs
}
