package shard

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/placement/tso"
)

// Oracle hands out revisions. Next returns the first of count
// consecutive timestamps [first, first+count), every one of them above
// every timestamp any call returned before this call began, fleet-wide.
// placementd's timestamp oracle (placement/tso, served over the network)
// is the fleet's; one process may share a tso.Local oracle among its
// stores (tests, the simulator). A *tso.Oracle implements it.
type Oracle interface {
	Next(ctx context.Context, count int) (first tso.Timestamp, err error)
}

// Stamping writes with revisions
//
// Store.Start encodes a write at once, its revision left zero, and hands
// it to the node's stamper, which proposes it once it has a revision. The
// stamper has at most one Oracle call in flight: the writes that arrive
// while a call is out wait for the next one, and each call asks for one
// timestamp per write waiting when it starts. So a write is never stamped
// by a call that began before the write arrived, which is what makes
// revisions follow real time across shards: if write A is acknowledged
// before write B arrives at any node, A's revision came from a call that
// returned before B's call began, and B's is higher. A write pays one
// Oracle round trip in latency; the throughput of writes is not bounded by
// the round trip, since one call serves every write that arrived during
// the previous one.
//
// Within one shard, the writes a leader stamps in one call are proposed in
// arrival order with increasing revisions, and later calls return higher
// ones, so a leader's writes reach the log with increasing revisions.
// Across a leader change a new leader's write can carry a lower revision
// than a write of the old leader that commits after it; Apply refuses it
// (ErrStaleRevision, identically on every replica), and a retry is
// stamped anew.

// oracleTimeout bounds one Oracle call; the writes waiting on a call that
// times out fail with its error.
const oracleTimeout = 5 * time.Second

// stampedWrite is one write waiting for its revision, then for its
// proposal's outcome; or, with e nil, a Now waiting for a timestamp.
type stampedWrite struct {
	shard  ShardID
	e      Engine
	cmd    []byte
	done   chan struct{} // closed once f or err is set
	f      *multiraft.Future
	err    error
	stamps uint64 // the revision given, for tests and errors
}

// stamper batches the writes of one Store into Oracle calls (see above).
type stamper struct {
	oracle Oracle
	// calls and stamped count the Oracle calls made and the writes they
	// stamped (see Store.OracleStats).
	calls, stamped atomic.Uint64
	mu             struct {
		sync.Mutex
		waiting []*stampedWrite
		calling bool
	}
}

// add queues w for the next Oracle call, starting one if none is out.
func (st *stamper) add(w *stampedWrite) {
	st.mu.Lock()
	st.mu.waiting = append(st.mu.waiting, w)
	start := !st.mu.calling
	st.mu.calling = true
	st.mu.Unlock()
	if start {
		go st.run()
	}
}

// run makes Oracle calls while writes are waiting, one at a time.
func (st *stamper) run() {
	var batch []*stampedWrite
	for {
		st.mu.Lock()
		batch, st.mu.waiting = st.mu.waiting, batch[:0]
		if len(batch) == 0 {
			st.mu.calling = false
			st.mu.Unlock()
			return
		}
		st.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), oracleTimeout)
		first, err := st.oracle.Next(ctx, len(batch))
		cancel()
		st.calls.Add(1)
		if err == nil {
			st.stamped.Add(uint64(len(batch)))
		}
		for i, w := range batch {
			if err != nil {
				w.err = fmt.Errorf("%w to shard %d: %w", ErrNoRevision, w.shard, err)
				if w.e == nil {
					w.err = fmt.Errorf("%w: %w", ErrNoRevision, err)
				}
			} else {
				w.stamps = uint64(first) + uint64(i)
				if w.e != nil {
					binary.BigEndian.PutUint64(w.cmd[revisionAt:], w.stamps)
					w.f = w.e.ProposeFuture(w.shard, w.cmd)
				}
			}
			close(w.done)
			batch[i] = nil
		}
	}
}

// Now returns a timestamp of the oracle from a call that began after Now
// was called: above the revision of every write acknowledged before, on
// any shard of the fleet. A read at it (GetAt, ScanAt) waits until its
// shard resolved it, so it sees every such write: how a read across
// shards is both one snapshot and linearizable. It shares the stamper's
// Oracle calls with the writes.
func (s *Store) Now(ctx context.Context) (uint64, error) {
	w := &stampedWrite{done: make(chan struct{})}
	s.stamp.add(w)
	select {
	case <-w.done:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	if w.err != nil {
		return 0, w.err
	}
	return w.stamps, nil
}

// OracleStats returns how many Oracle calls the Store's stamper made and
// how many writes they stamped: their ratio is the writes one call
// serves, which grows with the write rate (see Stamping writes above).
func (s *Store) OracleStats() (calls, stamped uint64) {
	return s.stamp.calls.Load(), s.stamp.stamped.Load()
}
