package router

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// Async commit (shard/percolator.go has the argument). The primary's
// prewrite lists every other key of the transaction; once all prewrites
// applied the transaction is committed, at the highest prewrite
// revision, and Commit answers. The outcome is then recorded on the
// primary's shard and the locks committed in the background
// (finishCommit), or by the readers that meet them: a lock whose primary
// lock outlived its TTL is rolled forward if every key the primary lists
// still holds its lock, else back (decideAsync).

// The bounds of a transaction that commits asynchronously: its primary
// lock lists all its keys, so the list must stay small (and within a
// shard's batch limit, which bounds it there). A larger transaction
// commits when its primary's commit applies, one round later.
const (
	asyncCommitMaxKeys     = 256
	asyncCommitMaxKeyBytes = 64 << 10
)

// asyncCommits reports whether a transaction of muts commits
// asynchronously.
func asyncCommits(muts []*pb.Mutation) bool {
	if len(muts) > asyncCommitMaxKeys+1 {
		return false
	}
	n := 0
	for _, m := range muts {
		n += len(m.GetKey())
	}
	return n <= asyncCommitMaxKeyBytes
}

// finishCommit records the outcome of a committed async transaction on
// the primary's shard, then commits its other locks, with a context of
// its own (the client was answered). The primary goes first: a
// resolver that finds a secondary unlocked relies on its record (see
// shard/percolator.go). A failure leaves the rest to the resolvers.
func (c *Client) finishCommit(m *txnMeta, commit uint64, muts []*pb.Mutation) {
	ctx, cancel := c.callContext(c.base)
	defer cancel()
	if c.commitKeys(ctx, m, commit, muts, true) == nil {
		_ = c.commitKeys(ctx, m, commit, muts, false)
	}
}

// abortAsync ends an async transaction one of whose prewrites failed
// with cause. Whether the keys of that prewrite are locked is unknown (its
// answer may be lost, or an earlier attempt may still be on its way), so
// a resolver could find every key locked and roll the transaction
// forward: the outcome is decided on the primary's shard first, by
// recording the rollback there. If that is refused, a resolver recorded
// the commit: the transaction committed, and Commit says so. If neither
// is known, the outcome is ErrAmbiguous.
func (c *Client) abortAsync(m *txnMeta, muts []*pb.Mutation, cause error) (uint64, func(), error) {
	ctx, cancel := c.callContext(c.base)
	defer cancel()
	rollback := func() { c.rollbackTxn(m, muts) }
	err := c.rollbackKeys(ctx, m, muts, true)
	if err == nil {
		return 0, rollback, cause
	}
	resp, cerr := c.checkTxn(ctx, m.start, m.primary)
	switch {
	case cerr == nil && resp.GetStatus() == pb.CheckTxnResponse_COMMITTED:
		commit := resp.GetCommit()
		return commit, func() { c.finishCommit(m, commit, muts) }, nil
	case cerr == nil && resp.GetStatus() == pb.CheckTxnResponse_ROLLED_BACK:
		return 0, rollback, cause
	}
	return 0, nil, fmt.Errorf("%w: a prewrite failed (%v), and so did the rollback: %w", ErrAmbiguous, cause, err)
}

// txnOutcome returns the outcome of the transaction (start, primary):
// committed (at the revision returned) or rolled back as its primary's
// shard records it, decided now if it can be (an expired lock), or
// pending.
func (c *Client) txnOutcome(ctx context.Context, start uint64, primary []byte) (pb.CheckTxnResponse_Status, uint64, error) {
	resp, err := c.checkTxn(ctx, start, primary)
	if err != nil {
		return 0, 0, err
	}
	if resp.GetStatus() != pb.CheckTxnResponse_SECONDARIES {
		return resp.GetStatus(), resp.GetCommit(), nil
	}
	return c.decideAsync(ctx, start, primary, resp.GetPrewrite(), resp.GetSecondaries())
}

// decideAsync decides the outcome of the async transaction (start,
// primary), whose primary lock, prewritten at prewrite, expired: it
// checks the secondaries, then records on the primary's shard committed
// (at the highest prewrite revision) if every one was locked, else rolled
// back. If that is refused or its answer lost, the record written first,
// by whoever did, is the outcome.
func (c *Client) decideAsync(ctx context.Context, start uint64, primary []byte, prewrite uint64, secondaries [][]byte) (pb.CheckTxnResponse_Status, uint64, error) {
	commit, all := prewrite, true
	if len(secondaries) > 0 {
		top, locked, err := c.checkSecondaries(ctx, start, primary, secondaries)
		if err != nil {
			return 0, 0, err
		}
		commit, all = max(commit, top), locked
	}
	m := &txnMeta{start: start, primary: primary}
	one := []*pb.Mutation{{Key: primary}}
	var err error
	if all {
		if err = c.commitKeys(ctx, m, commit, one, true); err == nil {
			return pb.CheckTxnResponse_COMMITTED, commit, nil
		}
	} else if err = c.rollbackKeys(ctx, m, one, true); err == nil {
		return pb.CheckTxnResponse_ROLLED_BACK, 0, nil
	}
	resp, cerr := c.checkTxn(ctx, start, primary)
	if cerr != nil {
		return 0, 0, cerr
	}
	switch st := resp.GetStatus(); st {
	case pb.CheckTxnResponse_COMMITTED, pb.CheckTxnResponse_ROLLED_BACK:
		return st, resp.GetCommit(), nil
	}
	return 0, 0, fmt.Errorf("router: deciding the transaction started at %d: %w", start, err)
}

// checkSecondaries checks keys on their shards, in parallel: all locked
// by the transaction (and the highest of their prewrite revisions), or
// not (and then markers keep them from being prewritten later). One shard
// that says "not all" decides, whatever the others answer.
func (c *Client) checkSecondaries(ctx context.Context, start uint64, primary []byte, keys [][]byte) (uint64, bool, error) {
	sorted := slices.SortedFunc(slices.Values(keys), bytes.Compare)
	muts := make([]*pb.Mutation, len(sorted))
	for i, k := range sorted {
		muts[i] = &pb.Mutation{Key: k}
	}
	groups, err := c.groupByShard(ctx, muts)
	if err != nil {
		return 0, false, err
	}
	type answer struct {
		top uint64
		all bool
		err error
	}
	answers := make([]answer, len(groups))
	var wg sync.WaitGroup
	for i, g := range groups {
		wg.Go(func() {
			a := &answers[i]
			a.top, a.all, a.err = c.checkSecondaryGroup(ctx, start, primary, g.keys())
		})
	}
	wg.Wait()
	top := uint64(0)
	var firstErr error
	for _, a := range answers {
		switch {
		case a.err != nil:
			if firstErr == nil {
				firstErr = a.err
			}
		case !a.all:
			return 0, false, nil
		default:
			top = max(top, a.top)
		}
	}
	if firstErr != nil {
		return 0, false, firstErr
	}
	return top, true, nil
}

// checkSecondaryGroup checks keys, which the route cache placed on one
// shard, regrouping them if that shard split.
func (c *Client) checkSecondaryGroup(ctx context.Context, start uint64, primary []byte, keys [][]byte) (uint64, bool, error) {
	for range regroupAttempts {
		var resp *pb.CheckSecondariesResponse
		err := c.do(ctx, &call{op: "check-secondaries", key: keys[0],
			send: func(ctx context.Context, kv pb.KVClient, r *route, hdr *pb.RequestHeader) error {
				if err := withinRoute(r, keys); err != nil {
					return err
				}
				var err error
				resp, err = kv.CheckSecondaries(ctx, &pb.CheckSecondariesRequest{Header: hdr, Start: start, Primary: primary, Keys: keys})
				return err
			}})
		if err == nil {
			return resp.GetPrewrite(), resp.GetAllLocked(), nil
		}
		if !errors.Is(err, errRegroup) {
			return 0, false, err
		}
		muts := make([]*pb.Mutation, len(keys))
		for i, k := range keys {
			muts[i] = &pb.Mutation{Key: k}
		}
		groups, err := c.groupByShard(ctx, muts)
		if err != nil {
			return 0, false, err
		}
		if len(groups) > 1 {
			top := uint64(0)
			for _, g := range groups {
				t, all, err := c.checkSecondaryGroup(ctx, start, primary, g.keys())
				if err != nil || !all {
					return 0, false, err
				}
				top = max(top, t)
			}
			return top, true, nil
		}
	}
	return 0, false, fmt.Errorf("%w: checking secondaries: shards kept splitting under them", ErrRetriesExhausted)
}

// background tracks the work a Client goes on with after answering a
// call: the commit of an async transaction's locks (finishCommit), the
// rollback of a failed transaction's. Close waits for it, bounded, so
// that a process that commits and exits at once does not leave its locks
// to block readers until their TTL. Safe for concurrent use.
type background struct {
	mu struct {
		sync.Mutex
		// n counts the work running.
		n int
		// idle is closed when n drops to zero; a new one is made when n
		// leaves zero.
		idle chan struct{}
	}
}

// goBackground runs f in a goroutine of its own, tracked for Close.
func (c *Client) goBackground(f func()) {
	b := &c.background
	b.mu.Lock()
	if b.mu.n == 0 {
		b.mu.idle = make(chan struct{})
	}
	b.mu.n++
	b.mu.Unlock()
	go func() {
		defer b.done()
		f()
	}()
}

func (b *background) done() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.mu.n--; b.mu.n == 0 {
		close(b.mu.idle)
	}
}

// wait returns once no work runs, or when ctx ends.
func (b *background) wait(ctx context.Context) {
	b.mu.Lock()
	if b.mu.n == 0 {
		b.mu.Unlock()
		return
	}
	idle := b.mu.idle
	b.mu.Unlock()
	select {
	case <-idle:
	case <-ctx.Done():
	}
}
