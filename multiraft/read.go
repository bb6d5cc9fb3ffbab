package multiraft

import (
	"context"
	"encoding/binary"
	"time"

	"go.etcd.io/raft/v3"
)

// ReadMode is the consistency a read asks for.
type ReadMode int

const (
	// ReadLinearizable confirms leadership with a quorum (Raft ReadIndex,
	// batched: one heartbeat round serves every read that arrived before
	// it) and waits until the leader applied the confirmed commit index.
	ReadLinearizable ReadMode = iota
	// ReadLease serves from the leader without a quorum round while its
	// lease holds: a lease starts when a quorum confirmed the leadership
	// (a ReadIndex round) and lasts LeaseTicks, shorter than the election
	// timeout during which, with CheckQuorum, no follower votes for anyone
	// else. It trusts the nodes' tick rates to agree within that margin.
	// Without a valid lease the read falls back to ReadLinearizable.
	ReadLease
	// ReadStale reads whatever this replica has applied, leader or not.
	// It may miss recent writes but never sees uncommitted ones.
	ReadStale
)

func (m ReadMode) String() string {
	switch m {
	case ReadLinearizable:
		return "linearizable"
	case ReadLease:
		return "lease"
	case ReadStale:
		return "stale"
	}
	return "unknown"
}

type readReq struct {
	fut   *Future
	lease bool
}

// ReadBarrier returns once this replica's applied state may be read at the
// given consistency; the caller then reads Pebble. Errors: *NotLeaderError
// (linearizable and lease reads need the leader), ErrGroupNotFound,
// ErrStopped, ctx errors.
func (e *Engine) ReadBarrier(ctx context.Context, group GroupID, mode ReadMode) error {
	_, err := e.ReadFuture(group, mode).Wait(ctx)
	return err
}

// ReadFuture is ReadBarrier without waiting.
func (e *Engine) ReadFuture(id GroupID, mode ReadMode) *Future {
	if mode == ReadStale {
		g := e.lookup(id)
		switch {
		case e.stopped.Load():
			return failedFuture(ErrStopped)
		case g == nil || g.appliedIdx.Load() == 0:
			return failedFuture(ErrGroupNotFound)
		}
		return failedFuture(nil)
	}
	f := newFuture()
	g, err := e.post(id, func(g *group) {
		g.mu.Lock()
		g.mu.reads = append(g.mu.reads, readReq{fut: f, lease: mode == ReadLease})
		g.mu.Unlock()
	})
	if err != nil {
		return failedFuture(err)
	}
	e.wake(g)
	return f
}

// read serves or batches the reads that arrived since the last round.
// Worker-owned.
func (r *round) read(g *group, reads []readReq) {
	if !g.isLead {
		err := g.notLeader()
		for _, rq := range reads {
			rq.fut.resolve(nil, err)
		}
		return
	}
	now := r.e.tick.Load()
	var batch *readBatch
	leaseServed := false
	for _, rq := range reads {
		if rq.lease && r.e.leaseValid(g, now) {
			leaseServed = true
			idx := g.st.hardState.GetCommit()
			if g.st.applied.index >= idx {
				rq.fut.resolve(nil, nil)
				continue
			}
			g.readsReady = append(g.readsReady, &readBatch{index: idx, reads: []*Future{rq.fut}})
			continue
		}
		if batch == nil {
			batch = r.newReadBatch(g, now)
		}
		batch.reads = append(batch.reads, rq.fut)
	}
	// Renew a lease that is half spent while it is in use, so steady lease
	// reads rarely fall back to a quorum round.
	if leaseServed && batch == nil && len(g.readsInFlight) == 0 &&
		g.leaseUntil-now < uint64(r.e.cfg.LeaseTicks)/2 {
		r.newReadBatch(g, now).lease = true
	}
}

func (r *round) newReadBatch(g *group, now uint64) *readBatch {
	g.nextReadID++
	b := &readBatch{id: g.nextReadID, startTick: now}
	if r.e.tickInterval.Load() > 0 {
		b.startTime = r.e.cfg.Clock()
	}
	g.readsInFlight = append(g.readsInFlight, b)
	g.rn.ReadIndex(readCtx(b.id))
	r.e.metrics.ReadBatches.Add(1)
	return b
}

// publishedLease is a leader's lease as its worker last set it.
type publishedLease struct {
	term, untilTick uint64
	untilTime       time.Time // zero without a TickInterval
}

// LeaseHeld reports, without a round of the group's worker, whether this
// replica leads group under a lease with at least half of it left (by
// ticks and, with a TickInterval, by the clock): what a lease read would
// be served under, for a caller that only needs to know it still leads
// (placement's timestamp fence, a lessor's keepalive). It is a hint in
// the other direction only: false means "ask ReadFuture with ReadLease",
// which also renews a lease that ran half out.
func (e *Engine) LeaseHeld(id GroupID) bool {
	g := e.lookup(id)
	if g == nil || e.stopped.Load() || !g.leading.Load() {
		return false
	}
	l := g.published.Load()
	if l == nil || l.term != g.term.Load() {
		return false
	}
	half := uint64(e.cfg.LeaseTicks) / 2
	if e.tick.Load()+half >= l.untilTick {
		return false
	}
	if d := time.Duration(e.tickInterval.Load()); d > 0 {
		return e.cfg.Clock().Add(time.Duration(half) * d).Before(l.untilTime)
	}
	return true
}

// leaseValid reports whether g may serve a lease read at engine tick now:
// its lease was won in the current term, no transfer began in it, and
// neither the lease's ticks nor, with a TickInterval, its real time ran
// out. The clock is read here, when the read is served, so a leader that
// was paused sees the pause at once, before any tick catches up.
func (e *Engine) leaseValid(g *group, now uint64) bool {
	term := g.term.Load()
	if g.leaseTerm != term || g.noLeaseTerm == term || now >= g.leaseUntil {
		return false
	}
	return e.tickInterval.Load() == 0 || e.cfg.Clock().Before(g.leaseUntilTime)
}

// readStateReady records the index raft confirmed for a read batch. The
// batch's start tick precedes every heartbeat that confirmed it, so the
// leader's lease runs from there.
func (g *group) readStateReady(e *Engine, rs raft.ReadState) {
	if len(rs.RequestCtx) != 8 {
		return
	}
	id := binary.LittleEndian.Uint64(rs.RequestCtx)
	for i, b := range g.readsInFlight {
		if b.id != id {
			continue
		}
		g.readsInFlight = append(g.readsInFlight[:i], g.readsInFlight[i+1:]...)
		b.index = rs.Index
		if term := g.term.Load(); g.isLead && g.noLeaseTerm != term {
			if until := b.startTick + uint64(e.cfg.LeaseTicks); until > g.leaseUntil || g.leaseTerm != term {
				g.leaseUntil, g.leaseTerm = until, term
				g.leaseUntilTime = time.Time{}
				if d := time.Duration(e.tickInterval.Load()); d > 0 && !b.startTime.IsZero() {
					g.leaseUntilTime = b.startTime.Add(time.Duration(e.cfg.LeaseTicks) * d)
				}
				g.published.Store(&publishedLease{term: term, untilTick: g.leaseUntil, untilTime: g.leaseUntilTime})
			}
		}
		if len(b.reads) > 0 {
			g.readsReady = append(g.readsReady, b)
		}
		return
	}
}

// resolveReads answers the reads whose index has been applied.
func (g *group) resolveReads() {
	n := 0
	for _, b := range g.readsReady {
		if b.index <= g.st.applied.index {
			for _, f := range b.reads {
				f.resolve(nil, nil)
			}
			continue
		}
		g.readsReady[n] = b
		n++
	}
	clear(g.readsReady[n:])
	g.readsReady = g.readsReady[:n]
}

// failReads fails every read waiting on this replica.
func (g *group) failReads(err error) {
	for _, b := range g.readsInFlight {
		for _, f := range b.reads {
			f.resolve(nil, err)
		}
	}
	for _, b := range g.readsReady {
		for _, f := range b.reads {
			f.resolve(nil, err)
		}
	}
	g.readsInFlight, g.readsReady = nil, nil
}

func readCtx(id uint64) []byte { return binary.LittleEndian.AppendUint64(make([]byte, 0, 8), id) }
