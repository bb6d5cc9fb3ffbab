package placement

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/placement/schedule"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
	"github.com/flotilla-kv/flotilla/shard"
)

// flight is an operator being executed or awaiting confirmation.
type flight struct {
	op      schedule.Operator
	rec     *pb.Operator
	done    bool      // its steps all succeeded
	settled time.Time // when done: wait for a heartbeat to confirm until then
	// again: a bootstrap operator that failed, to run again at the next
	// round (see execute).
	again bool
}

// scheduler is the leader's scheduling state. Owned by Run's goroutine,
// except flights, which executors finish under mu.
type scheduler struct {
	mu      sync.Mutex
	flights map[shard.ShardID]*flight
	ids     *idBlocks
	// orphans: when each shard that nodes host but no leader reports was
	// first seen so (see recreateOrphans). Owned by Run's goroutine.
	orphans map[shard.ShardID]time.Time
}

// Runtime runs the scheduler's background work: the goroutines it starts
// (executors, stray removals), the time they wait, their timeouts, and the
// catalogue proposals they wait for. Config.Runtime nil means goroutines on
// the wall clock. Every point where the service's own goroutines block goes
// through the Runtime or through a Connector's client, so the
// deterministic simulator (internal/sim) can supply a Runtime that runs
// them one at a time on its virtual clock and a seed decides every
// interleaving. Implementations are safe for concurrent use.
type Runtime interface {
	// Go runs f on a new goroutine; name says what it does (for traces).
	Go(name string, f func())
	// Sleep waits until d has passed, or until ctx ends and then returns
	// ctx.Err().
	Sleep(ctx context.Context, d time.Duration) error
	// WithTimeout is context.WithTimeout on the runtime's clock.
	WithTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc)
	// Wait waits until f resolves or ctx ends, and returns what
	// f.Wait(ctx) returns.
	Wait(ctx context.Context, f *multiraft.Future) (any, error)
}

// wallRuntime is the Runtime of a placementd: goroutines and timers.
type wallRuntime struct{}

func (wallRuntime) Go(_ string, f func()) { go f() }

func (wallRuntime) Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (wallRuntime) WithTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d)
}

func (wallRuntime) Wait(ctx context.Context, f *multiraft.Future) (any, error) { return f.Wait(ctx) }

// Run schedules while this replica leads the catalogue, until ctx ends:
// a round every Config.ScheduleInterval.
//
// The operators a leader starts run within its term: when the loop finds
// the replica no longer leading, it cancels them (each also checks before
// every step), so a deposed leader stops acting on shards before its
// successor, which first waits two heartbeat intervals, starts deciding.
func (s *Service) Run(ctx context.Context) {
	sch := &scheduler{flights: map[shard.ShardID]*flight{}, ids: &idBlocks{svc: s, ctx: ctx}, orphans: map[shard.ShardID]time.Time{}}
	var wg sync.WaitGroup
	var term context.Context
	endTerm := func() {}
	for {
		if s.cfg.Runtime.Sleep(ctx, s.cfg.ScheduleInterval) != nil {
			// The executors end with ctx. (Not deferred: a panicking round
			// must not wait for them.)
			endTerm()
			wg.Wait()
			return
		}
		lead, _ := s.leader()
		if !lead && term != nil {
			endTerm()
			term = nil
			sch.dropRetries()
		}
		since := s.leaderSince.Load()
		if !lead || since == 0 || s.cfg.Now().Sub(time.Unix(0, since)) < 2*s.cfg.HeartbeatInterval {
			// Followers do not schedule, and a new leader first lets the
			// heartbeats rebuild its view.
			continue
		}
		if term == nil {
			term, endTerm = context.WithCancel(ctx)
		}
		s.round(term, sch, &wg)
	}
}

// round runs one scheduling round and starts the operators it decides.
func (s *Service) round(ctx context.Context, sch *scheduler, wg *sync.WaitGroup) {
	now := s.cfg.Now()
	c := s.cluster(now, sch)
	plan, err := schedule.Schedule(c, sch.ids)
	switch {
	case errors.Is(err, errAllocStopped), errors.Is(err, errAllocExhausted):
		// Dropped quietly: idBlocks.take logged what needs it.
		return
	case err != nil:
		s.cfg.Logger.Error("scheduling round failed", "err", err)
		return
	}
	bootstrapping := false
	for _, op := range plan.Operators {
		if op.Kind == schedule.KindBootstrap {
			bootstrapping = true
		}
	}
	if bootstrapping && !c.Bootstrapped {
		// Record the bootstrap before creating anything, so it happens once.
		pctx, cancel := s.cfg.Runtime.WithTimeout(ctx, 5*time.Second)
		_, err := s.propose(pctx, command{Op: "bootstrapped"})
		cancel()
		if err != nil {
			s.cfg.Logger.Warn("recording the bootstrap", "err", err)
			return
		}
		s.cfg.Logger.Info("bootstrapping", "shards", len(plan.Operators))
	}
	var start []*flight
	for _, op := range plan.Operators {
		f := &flight{op: op, rec: s.ops.start(op.Kind.String(), uint64(op.Shard), op.String(), now)}
		sch.mu.Lock()
		sch.flights[op.Shard] = f
		sch.mu.Unlock()
		start = append(start, f)
	}
	s.view.mu.Lock()
	sch.mu.Lock()
	for _, id := range slices.Sorted(maps.Keys(sch.flights)) {
		f := sch.flights[id]
		switch {
		case !f.again:
		case s.view.shards[id] != nil:
			// A leader reports the shard: it exists, and its own replicas
			// (and repair) see to any missing one.
			delete(sch.flights, id)
		default:
			f.again = false
			f.rec = s.ops.start(f.op.Kind.String(), uint64(f.op.Shard), f.op.String(), now)
			start = append(start, f)
		}
	}
	sch.mu.Unlock()
	s.view.mu.Unlock()
	for _, f := range start {
		wg.Add(1)
		s.cfg.Runtime.Go("execute "+f.op.String(), func() {
			defer wg.Done()
			s.execute(ctx, sch, f)
		})
	}
	s.collectStrays(ctx, sch, now)
	s.recreateOrphans(ctx, sch, now)
}

// execute runs an operator's steps in order.
func (s *Service) execute(ctx context.Context, sch *scheduler, f *flight) {
	ctx, cancel := s.cfg.Runtime.WithTimeout(ctx, s.cfg.OperatorTimeout)
	defer cancel()
	var err error
	for _, step := range f.op.Steps {
		if lead, _ := s.leader(); !lead {
			err = fmt.Errorf("%s: %w", step, errNotLeading)
			break
		}
		if err = s.runStep(ctx, step); err != nil {
			err = fmt.Errorf("%s: %w", step, err)
			break
		}
	}
	now := s.cfg.Now()
	s.ops.finish(f.rec, err, now)
	sch.mu.Lock()
	defer sch.mu.Unlock()
	if err != nil && f.op.Kind == schedule.KindBootstrap {
		// A shard whose creation failed on some node may have no quorum
		// anywhere, so no leader to report it: no later round would see it
		// and repair it. Create it again (CreateReplica is idempotent)
		// until it is done.
		s.cfg.Logger.Warn("operator failed; running it again at the next round", "op", f.op.String(), "err", err)
		f.again = true
		return
	}
	if err != nil {
		s.cfg.Logger.Warn("operator failed", "op", f.op.String(), "err", err)
		delete(sch.flights, f.op.Shard)
		return
	}
	s.cfg.Logger.Info("operator done", "op", f.op.String())
	// Keep it in flight until a heartbeat shows its effect, so the next
	// round does not plan the same change again from a stale view.
	f.done, f.settled = true, now.Add(5*s.cfg.HeartbeatInterval)
}

func (s *Service) runStep(ctx context.Context, step schedule.Step) error {
	switch st := step.(type) {
	case schedule.CreateShard:
		return s.createShard(ctx, st.Descriptor)
	case schedule.AddReplica:
		return s.addReplica(ctx, st.Shard, st.Replica, st.Replica.Learner)
	case schedule.RemoveReplica:
		return s.removeReplica(ctx, st.Shard, st.Replica.ReplicaID)
	case schedule.TransferLeader:
		return s.transferLeader(ctx, st.Shard, st.To)
	case schedule.Split:
		m := make(map[multiraft.ReplicaID]multiraft.ReplicaID, len(st.NewReplicas))
		for _, r := range st.NewReplicas {
			m[r.Old] = r.New
		}
		return s.split(ctx, st.Shard, st.Key, st.NewShard, m)
	}
	return fmt.Errorf("placement: unknown step %T", step)
}

// confirmedLocked reports whether the view shows f's effect (or waited long
// enough for it). A split is confirmed only once the new shard is in the
// view too, so the next round never sees its key range as a gap.
func (s *Service) confirmedLocked(f *flight, now time.Time) bool {
	if now.After(f.settled) {
		return true
	}
	st := s.view.shards[f.op.Shard]
	if st == nil || !f.op.Visible(&st.desc, st.leader) {
		return false
	}
	for _, step := range f.op.Steps {
		if sp, ok := step.(schedule.Split); ok && s.view.shards[sp.NewShard] == nil {
			return false
		}
	}
	return true
}

// cluster snapshots the catalogue and the view for the scheduler, dropping
// the in-flight operators whose effect is now visible.
func (s *Service) cluster(now time.Time, sch *scheduler) *schedule.Cluster {
	cat := s.cat.Load()
	c := &schedule.Cluster{
		Bootstrapped: cat.Settings().Bootstrapped,
		Settings: schedule.Settings{
			ReplicationFactor: s.cfg.ReplicationFactor, InitialShards: s.cfg.InitialShards,
			SplitSizeBytes: int64(s.cfg.SplitSizeBytes), SplitLoad: s.cfg.SplitLoad, DownAfter: s.cfg.DownAfter,
		},
	}
	leaderSince := time.Unix(0, s.leaderSince.Load())
	s.view.mu.Lock()
	defer s.view.mu.Unlock()
	down := map[multiraft.NodeID]bool{}
	for _, n := range cat.Nodes() {
		sn := schedule.Node{ID: n.ID, Labels: schedule.Labels{Zone: n.Zone, Rack: n.Rack}, CapacityBytes: int64(n.CapacityBytes)}
		st := s.view.nodes[n.ID]
		switch {
		case st == nil:
			// Never heard of since this replica leads: down since then.
			sn.State, sn.DownFor = schedule.NodeDown, now.Sub(leaderSince)
		case now.Sub(st.lastBeat) >= s.downThreshold():
			sn.State, sn.DownFor = schedule.NodeDown, now.Sub(st.lastBeat)
		case n.Draining:
			sn.State = schedule.NodeDraining
		}
		if st != nil {
			sn.UsedBytes, sn.Load = int64(st.usedBytes), st.load
		}
		down[n.ID] = sn.State == schedule.NodeDown
		c.Nodes = append(c.Nodes, sn)
	}
	for _, st := range s.view.sortedLocked() {
		sh := schedule.Shard{Descriptor: st.desc, Leader: st.leader, SizeBytes: int64(st.sizeBytes), Keys: int64(st.keys), Load: st.load, Lagging: st.lagging}
		if down[st.leaderNode] {
			sh.Leader = 0
		}
		c.Shards = append(c.Shards, sh)
	}
	sch.mu.Lock()
	defer sch.mu.Unlock()
	for _, id := range slices.Sorted(maps.Keys(sch.flights)) {
		if f := sch.flights[id]; f.done && s.confirmedLocked(f, now) {
			delete(sch.flights, id)
		} else {
			c.InFlight = append(c.InFlight, f.op)
		}
	}
	return c
}

// collectStrays removes replicas that nodes still host but whose shard, as
// its leader reports it, no longer counts them: replicas removed while their
// node was away. A replica targeted by an operator in flight (an added
// replica not yet in the descriptor) is left alone.
func (s *Service) collectStrays(ctx context.Context, sch *scheduler, now time.Time) {
	type stray struct {
		node    multiraft.NodeID
		shard   shard.ShardID
		replica multiraft.ReplicaID
		epoch   shard.Epoch // of the descriptor that leaves it out
	}
	var strays []stray
	s.view.mu.Lock()
	for node, n := range s.view.nodes {
		if now.Sub(n.lastBeat) >= s.downThreshold() {
			continue
		}
		for _, r := range n.replicas {
			st := s.view.shards[shard.ShardID(r.GetShardId())]
			if st == nil || now.Sub(st.reported) > 2*s.cfg.HeartbeatInterval || r.GetLeader() {
				continue
			}
			if _, member := st.desc.Replica(multiraft.ReplicaID(r.GetReplicaId())); !member {
				strays = append(strays, stray{node, st.desc.ShardID, multiraft.ReplicaID(r.GetReplicaId()), st.desc.Epoch})
			}
		}
	}
	s.view.mu.Unlock()
	// In a fixed order, so a seed of the simulator replays.
	slices.SortFunc(strays, func(a, b stray) int {
		return cmp.Or(cmp.Compare(a.node, b.node), cmp.Compare(a.shard, b.shard))
	})
	sch.mu.Lock()
	defer sch.mu.Unlock()
	for _, st := range strays {
		if _, busy := sch.flights[st.shard]; busy {
			continue
		}
		s.cfg.Runtime.Go("remove stray", func() {
			cctx, cancel := s.cfg.Runtime.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := s.removeStray(cctx, st.node, st.shard, st.replica, st.epoch); err != nil {
				s.cfg.Logger.Debug("removing a stray replica", "node", st.node, "shard", st.shard, "err", err)
			} else {
				s.cfg.Logger.Info("removed a stray replica", "node", st.node, "shard", st.shard)
			}
		})
	}
}

// dropRetries forgets the failed bootstrap operators waiting to run again
// (see execute), when this replica stops leading: its successor finishes
// those bootstraps from what the nodes host (recreateOrphans), and its own
// retries would be stale if it led again later.
func (sch *scheduler) dropRetries() {
	sch.mu.Lock()
	defer sch.mu.Unlock()
	for id, f := range sch.flights {
		if f.again {
			delete(sch.flights, id)
		}
	}
}

// orphanAfter is how long nodes must host a shard that no leader reports
// before the leader looks into it (recreateOrphans).
func (s *Service) orphanAfter() time.Duration { return 10 * s.cfg.HeartbeatInterval }

// recreateOrphans finishes the bootstraps a placement failover cut short.
// A bootstrap records itself in the catalogue before it creates its
// shards; if the leader dies before a shard has a replica on a quorum of
// its nodes, no replica of it can ever lead, so no leader reports it and
// no round sees it, and its key range stays unavailable. The replicas
// that were created do show in their nodes' heartbeats. A shard that nodes
// have hosted for orphanAfter without any leader reporting it, and whose
// hosted replica still holds its initial descriptor (epoch 1/1: it never
// changed since the bootstrap), is created again on every node of that
// descriptor: every replica of a new shard starts from the same state, so
// creating the missing ones now is the bootstrap finishing late
// (recreateShard).
func (s *Service) recreateOrphans(ctx context.Context, sch *scheduler, now time.Time) {
	hosts := map[shard.ShardID][]multiraft.NodeID{}
	s.view.mu.Lock()
	for node, n := range s.view.nodes {
		if now.Sub(n.lastBeat) >= s.downThreshold() {
			continue
		}
		for _, r := range n.replicas {
			if id := shard.ShardID(r.GetShardId()); s.view.shards[id] == nil {
				hosts[id] = append(hosts[id], node)
			}
		}
	}
	s.view.mu.Unlock()
	for id := range sch.orphans {
		if hosts[id] == nil {
			delete(sch.orphans, id)
		}
	}
	sch.mu.Lock()
	defer sch.mu.Unlock()
	for _, id := range slices.Sorted(maps.Keys(hosts)) {
		first, seen := sch.orphans[id]
		if _, busy := sch.flights[id]; busy || !seen {
			sch.orphans[id] = now
			continue
		}
		if now.Sub(first) < s.orphanAfter() {
			continue
		}
		sch.orphans[id] = now // look again after orphanAfter
		nodes := hosts[id]
		slices.Sort(nodes)
		s.cfg.Runtime.Go("recreate orphan", func() {
			cctx, cancel := s.cfg.Runtime.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := s.recreateShard(cctx, id, nodes); err != nil {
				s.cfg.Logger.Warn("recreating a shard no leader reports", "shard", id, "err", err)
			}
		})
	}
}

// idBlocks hands out shard and replica IDs reserved from the catalogue in
// blocks, so a scheduling round needs few Raft proposals. A block is
// dropped as soon as a heartbeat reports an ID at or above its next one
// (after the catalogue was lost, its first blocks may hold IDs the fleet
// still uses); the block reserved then starts past the reported ID, since
// Heartbeat raises the counters before the view learns of it.
type idBlocks struct {
	svc       *Service
	ctx       context.Context
	next, end [4]uint64 // by counter
}

const idBlock = 64

var (
	// errAllocStopped: idBlocks could not reserve a block because the
	// round's context ended or this replica lost the lead.
	errAllocStopped = errors.New("placement: stopping while allocating IDs")
	// errAllocExhausted: the catalogue refused to reserve a block (its
	// counter is exhausted).
	errAllocExhausted = errors.New("placement: no IDs left to allocate")
	// errNotLeading ends an operator whose replica lost the lead.
	errNotLeading = errors.New("placement: this replica no longer leads the catalogue")
)

// take returns the next ID of counter, reserving a new block when the
// current one is used up or in use, and retrying a reservation that
// failed for a passing reason. It fails with errAllocStopped once the
// round's context ends or this replica stops leading (its proposals fail
// at once, and it must not plan from its stale view when it leads again),
// and with errAllocExhausted when the catalogue refuses.
func (b *idBlocks) take(counter uint64) (uint64, error) {
	if b.next[counter] <= b.svc.view.idInUse(counter) {
		b.next[counter] = b.end[counter] // IDs of this block are in use
	}
	if b.next[counter] == b.end[counter] {
		for {
			ctx, cancel := b.svc.cfg.Runtime.WithTimeout(b.ctx, 5*time.Second)
			first, err := b.svc.AllocateIDs(ctx, counter, idBlock)
			cancel()
			if err == nil {
				b.next[counter], b.end[counter] = first, first+idBlock
				break
			}
			if lead, _ := b.svc.leader(); b.ctx.Err() != nil || !lead {
				return 0, errAllocStopped
			}
			if status.Code(err) == codes.InvalidArgument {
				b.svc.cfg.Logger.Error("allocating IDs", "counter", counter, "err", err)
				return 0, errAllocExhausted
			}
			b.svc.cfg.Logger.Warn("allocating IDs", "err", err)
		}
	}
	id := b.next[counter]
	b.next[counter]++
	return id, nil
}

// NewShardID implements schedule.IDAllocator.
func (b *idBlocks) NewShardID() (shard.ShardID, error) {
	id, err := b.take(CounterShard)
	return shard.ShardID(id), err
}

// NewReplicaID implements schedule.IDAllocator.
func (b *idBlocks) NewReplicaID() (multiraft.ReplicaID, error) {
	id, err := b.take(CounterReplica)
	return multiraft.ReplicaID(id), err
}
