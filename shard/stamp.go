package shard

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flotilla-kv/flotilla/internal/syskeys"
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

// WriteOracle is an Oracle that also keeps the last write's timestamp
// (placement/tso, "The last write"), an optional capability the Store
// checks for at run time: with it, Store.LastWrite answers the revision
// of the last write instead of a fresh one. NextWrites is Next for a
// batch whose first writeSpan timestamps include every one given to a
// write (0: none is), recording the last of them; it returns the last
// write's timestamp after that. LastWrite hands out nothing and returns
// it. A *tso.Oracle implements it, and so does shardnode's client of
// placementd's oracle.
type WriteOracle interface {
	Oracle
	NextWrites(ctx context.Context, count, writeSpan int) (first, lastWrite tso.Timestamp, err error)
	LastWrite(ctx context.Context) (tso.Timestamp, error)
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
//
// The last write. With a WriteOracle, each call also tells the oracle
// which of its timestamps stamp writes of user data: the batch stays in
// arrival order, and the call passes as its write span the position of
// the last such write in it, so the oracle records exactly that write's
// revision. A write of user data is a command that makes versions a
// client reads: Put, Delete, CompareAndSwap and Batch with a key outside
// the system span (syskeys.SystemPrefix on), and every Txn, Prewrite and
// kind of write to come (counted without looking inside, which is always
// safe: a span too long only makes the last write higher). Not counted:
// Resolves, Nows, and writes of system keys only (lease records, which
// etcd's revision does not count either). Store.LastWrite waiters join
// the batch without taking a timestamp and get the oracle's last write
// after the batch's span was recorded; a batch of only such waiters asks
// the oracle for that alone.

// oracleTimeout bounds one Oracle call; the writes waiting on a call that
// times out fail with its error.
const oracleTimeout = 5 * time.Second

// stampedWrite is one write waiting for its revision, then for its
// proposal's outcome; or, with e nil, a Now waiting for a timestamp (a
// LastWrite, with lastWrite, for the last write's).
type stampedWrite struct {
	shard     ShardID
	e         Engine
	cmd       []byte
	lastWrite bool
	done      chan struct{} // closed once f or err is set
	f         *multiraft.Future
	err       error
	stamps    uint64 // the revision given, for tests and errors
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
	// decoded is run's scratch command for userWrite: only the one
	// goroutine running run touches it.
	decoded Command
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
	wo, tracks := st.oracle.(WriteOracle)
	for {
		st.mu.Lock()
		batch, st.mu.waiting = st.mu.waiting, batch[:0]
		if len(batch) == 0 {
			st.mu.calling = false
			st.mu.Unlock()
			return
		}
		st.mu.Unlock()
		// count is the timestamps the batch takes, span the position of
		// its last write of user data (see The last write). Without a
		// WriteOracle a LastWrite takes a fresh timestamp, as Now does.
		count, span := 0, 0
		for _, w := range batch {
			if w.lastWrite && tracks {
				continue
			}
			count++
			if w.e != nil && st.userWrite(w.cmd) {
				span = count
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), oracleTimeout)
		var (
			first, last tso.Timestamp
			err         error
		)
		switch {
		case !tracks:
			first, err = st.oracle.Next(ctx, count)
		case count == 0:
			last, err = wo.LastWrite(ctx)
		default:
			first, last, err = wo.NextWrites(ctx, count, span)
		}
		cancel()
		st.calls.Add(1)
		if err == nil {
			st.stamped.Add(uint64(count))
		}
		i := 0
		for j, w := range batch {
			switch {
			case err != nil:
				w.err = fmt.Errorf("%w to shard %d: %w", ErrNoRevision, w.shard, err)
				if w.e == nil {
					w.err = fmt.Errorf("%w: %w", ErrNoRevision, err)
				}
			case w.lastWrite && tracks:
				w.stamps = uint64(last)
			default:
				w.stamps = uint64(first) + uint64(i)
				i++
				if w.e != nil {
					binary.BigEndian.PutUint64(w.cmd[revisionAt:], w.stamps)
					w.f = w.e.ProposeFuture(w.shard, w.cmd)
				}
			}
			close(w.done)
			batch[j] = nil
		}
	}
}

// userWrite reports whether the encoded command cmd writes user data
// that counts for the last write (see The last write): it decodes only
// the kinds that may write system keys alone.
func (st *stamper) userWrite(cmd []byte) bool {
	kind := CommandKind(cmd[1])
	switch {
	case !kind.writesData():
		return false
	case kind != KindPut && kind != KindDelete && kind != KindCompareAndSwap && kind != KindBatch:
		return true
	}
	c := &st.decoded
	defer c.reset()
	if err := DecodeCommand(cmd, c); err != nil {
		// Encoded by Start, so it decodes; if it did not, Apply refuses
		// it. Counting it is safe either way.
		return true
	}
	if kind != KindBatch {
		return !isSystemKey(c.Key)
	}
	for i := range c.Ops {
		if !isSystemKey(c.Ops[i].Key) {
			return true
		}
	}
	return false
}

// isSystemKey reports whether key lies in the fleet's system span.
func isSystemKey(key []byte) bool {
	return bytes.Compare(key, syskeys.SystemPrefix) >= 0
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

// LastWrite returns the revision of the last write of user data (see
// The last write), fleet-wide, from an oracle call that began after
// LastWrite was called: at or above the revision of every write of user
// data acknowledged before, on any shard, and below every revision the
// oracle hands out after it. A read at it (GetAt, ScanAt) waits until
// its shard resolved it, so it sees every such write; and when nothing
// was written since a write, it is that write's revision, which is what
// etcd answers as its current revision (placement/tso, "The last write",
// has the argument). After a change of placement leader, until the next
// write, it is a revision above every one handed out but not a write's.
// Writes of system keys only (lease records) may be above it. With an
// Oracle that is not a WriteOracle it is Now's fresh timestamp, which
// keeps every guarantee but the equality. It shares the stamper's Oracle
// calls with the writes; a batch of LastWrite calls alone costs an oracle
// round trip that hands out nothing.
func (s *Store) LastWrite(ctx context.Context) (uint64, error) {
	w := &stampedWrite{lastWrite: true, done: make(chan struct{})}
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
