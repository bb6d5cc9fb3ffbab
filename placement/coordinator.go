package placement

import (
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

// coordinator is the leader's scheduling loop and its state: it runs a
// round every Config.ScheduleInterval while this replica leads, and
// executes the operators the round decides (execute.go), removes stray
// replicas (strays.go) and finishes orphaned bootstraps (orphans.go).
// Service.Run makes one and runs it; everything but mu.flights is owned by
// that goroutine. Lock order: mu before the view's lock.
type coordinator struct {
	*core
	mu struct {
		sync.Mutex
		// flights are the operators in flight, by shard; executors finish
		// them.
		flights map[shard.ShardID]*flight
		// unsplittable: the shards whose leader refused a split as
		// impossible (INVALID_ARGUMENT: too few keys), with their size
		// when it did (0 until a round sees it); see cluster.
		unsplittable map[shard.ShardID]int64
	}
	ids *idBlocks
	// orphans: when each shard that nodes host but no leader reports was
	// first seen so (see recreateOrphans).
	orphans map[shard.ShardID]time.Time
	// wg counts the executors running.
	wg sync.WaitGroup
}

// Run schedules while this replica leads the catalogue, until ctx ends:
// a round every Config.ScheduleInterval. Call it once, on its own
// goroutine; it returns once ctx ends and the operators it started have,
// and closes the timestamp oracle (see timestamps.go).
//
// The operators a leader starts run within its term: when the loop finds
// the replica no longer leading, it cancels them (each also checks before
// every step), so a deposed leader stops acting on shards before its
// successor, which first waits two heartbeat intervals, starts deciding.
func (s *Service) Run(ctx context.Context) {
	c := &coordinator{core: s.core, ids: &idBlocks{core: s.core, ctx: ctx}, orphans: map[shard.ShardID]time.Time{}}
	c.mu.flights = map[shard.ShardID]*flight{}
	c.mu.unsplittable = map[shard.ShardID]int64{}
	s.coord.Store(c)
	c.run(ctx)
	s.coord.Store(nil)
	s.closeOracle()
}

// run is Run's loop.
func (c *coordinator) run(ctx context.Context) {
	var term context.Context
	endTerm := func() {}
	for {
		if c.cfg.Runtime.Sleep(ctx, c.cfg.ScheduleInterval) != nil {
			// The executors end with ctx. (Not deferred: a panicking round
			// must not wait for them.)
			endTerm()
			c.wg.Wait()
			return
		}
		lead, _ := c.observeLeader()
		if !lead && term != nil {
			endTerm()
			term = nil
			c.dropRetries()
		}
		since := c.leaderSince.Load()
		if !lead || since == 0 || c.cfg.Now().Sub(time.Unix(0, since)) < 2*c.cfg.HeartbeatInterval {
			// Followers do not schedule, and a new leader first lets the
			// heartbeats rebuild its view.
			continue
		}
		if term == nil {
			term, endTerm = context.WithCancel(ctx)
		}
		c.round(term)
	}
}

// round runs one scheduling round and starts the operators it decides.
func (c *coordinator) round(ctx context.Context) {
	now := c.cfg.Now()
	cl := c.cluster(now)
	plan, err := schedule.Schedule(cl, c.ids)
	switch {
	case errors.Is(err, errAllocStopped), errors.Is(err, errAllocExhausted):
		// Dropped quietly: idBlocks.take logged what needs it.
		return
	case err != nil:
		c.cfg.Logger.Error("scheduling round failed", "err", err)
		return
	}
	bootstrapping := false
	for _, op := range plan.Operators {
		if op.Kind == schedule.KindBootstrap {
			bootstrapping = true
		}
	}
	if bootstrapping && !cl.Bootstrapped {
		// Record the bootstrap before creating anything, so it happens once.
		pctx, cancel := c.cfg.Runtime.WithTimeout(ctx, 5*time.Second)
		_, err := c.propose(pctx, command{Op: "bootstrapped"})
		cancel()
		if err != nil {
			c.cfg.Logger.Warn("recording the bootstrap", "err", toStatus(err))
			return
		}
		c.cfg.Logger.Info("bootstrapping", "shards", len(plan.Operators))
	}
	var start []*flight
	for _, op := range plan.Operators {
		f := &flight{op: op, rec: c.ops.start(op.Kind.String(), uint64(op.Shard), op.String(), now)}
		c.mu.Lock()
		c.mu.flights[op.Shard] = f
		c.mu.Unlock()
		start = append(start, f)
	}
	c.mu.Lock()
	for _, id := range slices.Sorted(maps.Keys(c.mu.flights)) {
		f := c.mu.flights[id]
		switch {
		case !f.again:
		case c.view.reports(id):
			// A leader reports the shard: it exists, and its own replicas
			// (and repair) see to any missing one.
			delete(c.mu.flights, id)
		default:
			f.again = false
			f.rec = c.ops.start(f.op.Kind.String(), uint64(f.op.Shard), f.op.String(), now)
			start = append(start, f)
		}
	}
	c.mu.Unlock()
	for _, f := range start {
		c.wg.Add(1)
		c.cfg.Runtime.Go("execute "+f.op.String(), func() {
			defer c.wg.Done()
			c.execute(ctx, f)
		})
	}
	c.collectStrays(ctx, now)
	c.recreateOrphans(ctx, now)
}

// execute runs an operator's steps in order.
func (c *coordinator) execute(ctx context.Context, f *flight) {
	ctx, cancel := c.cfg.Runtime.WithTimeout(ctx, c.cfg.OperatorTimeout)
	defer cancel()
	var err error
	for _, step := range f.op.Steps {
		if lead, _ := c.observeLeader(); !lead {
			err = fmt.Errorf("%s: %w", step, errNotLeading)
			break
		}
		if err = c.runStep(ctx, step); err != nil {
			err = fmt.Errorf("%s: %w", step, err)
			break
		}
	}
	now := c.cfg.Now()
	c.ops.finish(f.rec, err, now)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil && f.op.Kind == schedule.KindBootstrap {
		// A shard whose creation failed on some node may have no quorum
		// anywhere, so no leader to report it: no later round would see it
		// and repair it. Create it again (CreateReplica is idempotent)
		// until it is done.
		c.cfg.Logger.Warn("operator failed; running it again at the next round", "op", f.op.String(), "err", err)
		f.again = true
		return
	}
	if err != nil {
		c.cfg.Logger.Warn("operator failed", "op", f.op.String(), "err", err)
		delete(c.mu.flights, f.op.Shard)
		if f.op.Kind == schedule.KindSplit && status.Code(err) == codes.InvalidArgument {
			c.mu.unsplittable[f.op.Shard] = 0
		}
		return
	}
	c.cfg.Logger.Info("operator done", "op", f.op.String())
	// Keep it in flight until a heartbeat shows its effect, so the next
	// round does not plan the same change again from a stale view.
	f.done, f.settled = true, now.Add(5*c.cfg.HeartbeatInterval)
}

// runStep executes one step of an operator (execute.go).
func (c *coordinator) runStep(ctx context.Context, step schedule.Step) error {
	switch st := step.(type) {
	case schedule.CreateShard:
		return c.createShard(ctx, st.Descriptor)
	case schedule.AddReplica:
		return c.addReplica(ctx, st.Shard, st.Replica, st.Replica.Learner)
	case schedule.RemoveReplica:
		return c.removeReplica(ctx, st.Shard, st.Replica.ReplicaID)
	case schedule.TransferLeader:
		return c.transferLeader(ctx, st.Shard, st.To)
	case schedule.Split:
		m := make(map[multiraft.ReplicaID]multiraft.ReplicaID, len(st.NewReplicas))
		for _, r := range st.NewReplicas {
			m[r.Old] = r.New
		}
		return c.split(ctx, st.Shard, st.Key, st.NewShard, m)
	}
	return fmt.Errorf("placement: unknown step %T", step)
}

// cluster snapshots the catalogue and the view for the scheduler, dropping
// the in-flight operators whose effect is now visible.
func (c *coordinator) cluster(now time.Time) *schedule.Cluster {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := slices.Sorted(maps.Keys(c.mu.flights))
	flights := make([]*flight, len(ids))
	for i, id := range ids {
		flights[i] = c.mu.flights[id]
	}
	cl, confirmed := c.clusterOf(now, flights)
	// A shard found unsplittable stays so until its leader reports two
	// keys or more, or, while it reports no count, until the shard doubles
	// in size: then its leader is asked again (it may hold more keys by
	// then). Size alone is no sign of new keys: one key's history grows it.
	for i := range cl.Shards {
		s := &cl.Shards[i]
		at, ok := c.mu.unsplittable[s.Descriptor.ShardID]
		switch {
		case !ok:
		case s.Keys >= 2:
			delete(c.mu.unsplittable, s.Descriptor.ShardID)
		case s.Keys == 1:
			s.Unsplittable = true
		case at == 0:
			c.mu.unsplittable[s.Descriptor.ShardID] = s.SizeBytes
			s.Unsplittable = true
		case s.SizeBytes > 2*at:
			delete(c.mu.unsplittable, s.Descriptor.ShardID)
		default:
			s.Unsplittable = true
		}
	}
	for i, f := range flights {
		if confirmed[i] {
			delete(c.mu.flights, f.op.Shard)
		} else {
			cl.InFlight = append(cl.InFlight, f.op)
		}
	}
	return cl
}

// clusterOf returns the catalogue and the view at now as the scheduler's
// input, with no operator in flight, and whether the view shows the effect
// of each of flights (see view.cluster).
func (c *core) clusterOf(now time.Time, flights []*flight) (*schedule.Cluster, []bool) {
	cat := c.cat.load()
	cl := &schedule.Cluster{Bootstrapped: cat.Settings().Bootstrapped, Settings: c.cfg.scheduleSettings()}
	var confirmed []bool
	cl.Nodes, cl.Shards, confirmed = c.view.cluster(cat.Nodes(), now, c.since(), c.downThreshold(), flights)
	return cl, confirmed
}

// dropRetries forgets the failed bootstrap operators waiting to run again
// (see execute), when this replica stops leading: its successor finishes
// those bootstraps from what the nodes host (recreateOrphans), and its own
// retries would be stale if it led again later.
func (c *coordinator) dropRetries() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, f := range c.mu.flights {
		if f.again {
			delete(c.mu.flights, id)
		}
	}
}
