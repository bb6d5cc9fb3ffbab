package placement

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/placement/schedule"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
	"github.com/flotilla-kv/flotilla/shard"
)

// errNotLeading ends an operator whose replica lost the lead.
var errNotLeading = errors.New("placement: this replica no longer leads the catalogue")

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

// clusterLocked returns the catalogue's nodes and the view's shards at now
// as the scheduler's input, with no operator in flight: a node silent for
// downThreshold is down (for as long as it has been silent; one never
// heard of since this replica leads, for as long as it leads), a draining
// one draining; a leader on a node that is down is unknown. The caller
// holds s.view.mu. The Cluster shares the view's descriptors and lagging
// lists, which a heartbeat replaces but never modifies: it may be read
// after the lock is released, and must not be modified.
func (s *Service) clusterLocked(cat *catalogue, now time.Time) *schedule.Cluster {
	c := &schedule.Cluster{Bootstrapped: cat.Settings().Bootstrapped, Settings: s.scheduleSettings()}
	leaderSince := time.Unix(0, s.leaderSince.Load())
	down := map[multiraft.NodeID]bool{}
	for _, n := range cat.Nodes() {
		sn := schedule.Node{ID: n.ID, Labels: schedule.Labels{Zone: n.Zone, Rack: n.Rack}, CapacityBytes: int64(n.CapacityBytes)}
		st := s.view.nodes[n.ID]
		switch {
		case st == nil:
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
	return c
}

// scheduleSettings returns the scheduler's settings from the config.
func (s *Service) scheduleSettings() schedule.Settings {
	return schedule.Settings{
		ReplicationFactor: s.cfg.ReplicationFactor, InitialShards: s.cfg.InitialShards,
		SplitSizeBytes: int64(s.cfg.SplitSizeBytes), SplitLoad: s.cfg.SplitLoad, DownAfter: s.cfg.DownAfter,
	}
}
