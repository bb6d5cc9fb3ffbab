package multiraft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3"

	"github.com/flotilla-kv/flotilla/internal/keys"
)

// Engine hosts many Raft groups in one process over one Pebble instance.
// All methods are safe for concurrent use unless they say otherwise.
type Engine struct {
	cfg    Config
	db     *pebble.DB
	sched  *scheduler
	logger raft.Logger
	// origin identifies this engine incarnation in proposal envelopes:
	// NodeID in the high 32 bits, the incarnation in the low 32.
	origin uint64
	nextID atomic.Uint64
	tick   atomic.Uint64
	// tickInterval is Config.TickInterval, or RunTicker's interval (ns).
	tickInterval atomic.Int64
	manual       bool
	stopped      atomic.Bool
	draining     atomic.Bool
	workers      sync.WaitGroup
	snapshot     sync.WaitGroup // goroutines building incoming snapshots

	mu struct {
		sync.RWMutex
		groups map[GroupID]*group
		// tombstones holds the highest replica ID of each group removed
		// from this node (see tombstone.go).
		tombstones map[GroupID]ReplicaID
	}
	// list is a copy-on-write slice of every group, for Tick.
	list atomic.Pointer[[]*group]
	// roundMu serialises Process in manual mode.
	roundMu sync.Mutex
	// createMu serialises the creation of groups. creating, under it,
	// holds the groups a split or CreateGroup is creating: their state is
	// in a batch not committed yet, so no message may create them
	// meanwhile.
	createMu sync.Mutex
	creating map[GroupID]bool
	// layoutMu is the layout lock (see layout.go): rounds hold it
	// exclusively, CreateGroup shared.
	layoutMu sync.RWMutex

	metrics Metrics
	// disk is the first disk failure, after which the engine stops
	// itself (see diskfailure.go).
	disk diskFailure
}

// Open recovers every group stored in cfg.DB and starts the workers. The
// engine is ready to serve when Open returns.
func Open(cfg Config) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if cfg.Workers == 0 {
		cfg.Workers = runtime.GOMAXPROCS(0) * 2
	}
	e := &Engine{
		cfg:    cfg,
		db:     cfg.DB,
		sched:  newScheduler(),
		logger: newRaftLogger(cfg.Logger),
		manual: cfg.Workers < 0,
	}
	e.tickInterval.Store(int64(cfg.TickInterval))
	e.mu.groups = make(map[GroupID]*group)
	e.mu.tombstones = make(map[GroupID]ReplicaID)
	e.creating = make(map[GroupID]bool)
	e.list.Store(&[]*group{})
	inc, err := e.bumpIncarnation()
	if err != nil {
		return nil, err
	}
	e.origin = uint64(cfg.NodeID)<<32 | uint64(inc)
	if err := e.recover(); err != nil {
		return nil, err
	}
	for range max(cfg.Workers, 0) {
		e.workers.Add(1)
		go e.work()
	}
	return e, nil
}

// bumpIncarnation increments and syncs the engine's incarnation counter.
func (e *Engine) bumpIncarnation() (uint32, error) {
	var inc uint32
	v, closer, err := e.db.Get(keys.EngineIncarnation)
	switch {
	case err == nil:
		if len(v) == 4 {
			inc = binary.LittleEndian.Uint32(v)
		}
		closer.Close()
	case !errors.Is(err, pebble.ErrNotFound):
		return 0, err
	}
	inc++
	if err := e.db.Set(keys.EngineIncarnation, binary.LittleEndian.AppendUint32(nil, inc), pebble.Sync); err != nil {
		return 0, err
	}
	return inc, nil
}

// recover loads every group that has a replica ID on this node, and the
// tombstones of the groups removed from it.
func (e *Engine) recover() error {
	lo, hi := keys.RaftGroupsSpan()
	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	defer it.Close()
	for valid := it.First(); valid; {
		id, _, ok := keys.RaftKeyGroup(it.Key())
		if !ok {
			return fmt.Errorf("multiraft: unexpected key %x among raft state", it.Key())
		}
		tomb, err := loadTombstone(e.db, GroupID(id))
		if err != nil {
			return err
		}
		if tomb != 0 {
			e.mu.tombstones[GroupID(id)] = tomb
		}
		v, closer, err := e.db.Get(keys.RaftKey(id, keys.RaftReplicaID))
		switch {
		case err == nil:
			if len(v) != 8 {
				closer.Close()
				return fmt.Errorf("multiraft: group %d: %w: replica ID", id, errCorruptState)
			}
			replica := ReplicaID(binary.LittleEndian.Uint64(v))
			closer.Close()
			if _, err := e.registerGroup(GroupID(id), replica, false /* publish */, e.voteHold()); err != nil {
				return err
			}
		case !errors.Is(err, pebble.ErrNotFound):
			return err
		}
		// Skip the rest of this group's keys (its log) in one seek.
		_, next := keys.RaftPrefix(id)
		valid = it.SeekGE(next)
	}
	// Publish the list of recovered groups once, not once per group.
	e.mu.Lock()
	e.publishListLocked()
	e.mu.Unlock()
	return it.Error()
}

// loadGroup builds the in-memory group from its stored state and registers it.
func (e *Engine) loadGroup(id GroupID, replica ReplicaID) (*group, error) {
	return e.registerGroup(id, replica, true /* publish */, 0)
}

// registerGroup is loadGroup; without publish the group is not added to
// the list Tick walks, and the caller must publish the list (recover
// publishes it once for every group). The replica grants no vote before
// engine tick noVotesUntil (see group.noVotesUntil; 0 for none).
func (e *Engine) registerGroup(id GroupID, replica ReplicaID, publish bool, noVotesUntil uint64) (*group, error) {
	// Creations of one group are serialised so that a losing racer never
	// builds a state machine (which may register itself with its owner).
	e.createMu.Lock()
	defer e.createMu.Unlock()
	return e.registerGroupLocked(id, replica, publish, noVotesUntil)
}

// voteHold is the noVotesUntil of a replica that may have acknowledged a
// leader this engine no longer remembers: one election timeout from now.
func (e *Engine) voteHold() uint64 {
	return e.tick.Load() + uint64(e.cfg.ElectionTicks)
}

// registerGroupLocked is registerGroup with createMu held.
func (e *Engine) registerGroupLocked(id GroupID, replica ReplicaID, publish bool, noVotesUntil uint64) (*group, error) {
	if e.lookup(id) != nil {
		return nil, fmt.Errorf("%w: %d", ErrGroupExists, id)
	}
	st, err := loadStorage(e.db, id, e.cfg.EntryCacheBytes)
	if err != nil {
		return nil, err
	}
	rn, err := raft.NewRawNode(e.raftConfig(replica, st))
	if err != nil {
		return nil, fmt.Errorf("multiraft: group %d: %w", id, err)
	}
	// A replica that is its group's only voter need not wait out an
	// election timeout: nobody else can win, so it campaigns at once (a
	// restarted single-replica group leads again in its first round).
	if cs := st.applied.confState; len(cs.GetVoters()) == 1 && cs.GetVoters()[0] == uint64(replica) &&
		len(cs.GetVotersOutgoing()) == 0 {
		_ = rn.Campaign()
	}
	sm, err := e.cfg.NewStateMachine(id, replica, e.db)
	if err != nil {
		return nil, fmt.Errorf("multiraft: group %d: state machine: %w", id, err)
	}
	g := &group{id: id, replica: replica, rn: rn, st: st, pending: make(map[uint64]*Future), noVotesUntil: noVotesUntil}
	g.setSM(sm)
	g.appliedIdx.Store(st.applied.index)
	g.term.Store(st.hardState.GetTerm())
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.mu.groups[id]; ok {
		return nil, fmt.Errorf("%w: %d", ErrGroupExists, id)
	}
	e.mu.groups[id] = g
	if publish {
		e.insertListLocked(g)
	}
	e.sched.enqueue(g)
	return g, nil
}

// insertListLocked publishes a copy of the list with g inserted in ID
// order: one copy per new group, where publishListLocked's rebuild and sort
// made creating or recovering n groups cost O(n² log n).
func (e *Engine) insertListLocked(g *group) {
	old := *e.list.Load()
	i, _ := slices.BinarySearchFunc(old, g.id, func(x *group, id GroupID) int { return cmpU64(uint64(x.id), uint64(id)) })
	l := make([]*group, 0, len(old)+1)
	l = append(append(append(l, old[:i]...), g), old[i:]...)
	e.list.Store(&l)
}

func (e *Engine) publishListLocked() {
	l := make([]*group, 0, len(e.mu.groups))
	for _, g := range e.mu.groups {
		l = append(l, g)
	}
	slices.SortFunc(l, func(a, b *group) int { return cmpU64(uint64(a.id), uint64(b.id)) })
	e.list.Store(&l)
}

func (e *Engine) raftConfig(replica ReplicaID, st *storage) *raft.Config {
	return &raft.Config{
		ID:                        uint64(replica),
		ElectionTick:              e.cfg.ElectionTicks,
		HeartbeatTick:             e.cfg.HeartbeatTicks,
		Storage:                   st,
		Applied:                   st.applied.index,
		MaxSizePerMsg:             e.cfg.MaxSizePerMsgBytes,
		MaxCommittedSizePerReady:  4 * e.cfg.MaxSizePerMsgBytes,
		MaxUncommittedEntriesSize: e.cfg.MaxUncommittedBytes,
		MaxInflightMsgs:           e.cfg.MaxInflightMsgs,
		CheckQuorum:               true,
		PreVote:                   true,
		ReadOnlyOption:            raft.ReadOnlySafe,
		Logger:                    e.logger,
		DisableProposalForwarding: true,
		StepDownOnRemoval:         true,
	}
}

// DB returns the engine's Pebble instance.
func (e *Engine) DB() *pebble.DB { return e.db }

// NodeID returns this engine's node ID.
func (e *Engine) NodeID() NodeID { return e.cfg.NodeID }

// lookup returns the group or nil.
func (e *Engine) lookup(id GroupID) *group {
	e.mu.RLock()
	g := e.mu.groups[id]
	e.mu.RUnlock()
	return g
}

// Groups returns the IDs of every group hosted here, in ascending order.
func (e *Engine) Groups() []GroupID {
	l := *e.list.Load()
	ids := make([]GroupID, len(l))
	for i, g := range l {
		ids[i] = g.id
	}
	return ids
}

// Tick advances every active group's logical clock by one tick. Production
// calls it from one ticker (see RunTicker); the simulator calls it
// directly. Quiesced groups are skipped, which is what makes idle groups
// nearly free.
func (e *Engine) Tick() {
	e.tick.Add(1)
	for _, g := range *e.list.Load() {
		if g.quiesced.Load() {
			continue
		}
		g.pendingTicks.Add(1)
		e.sched.enqueue(g)
	}
}

// wake unquiesces g and schedules it.
func (e *Engine) wake(g *group) {
	g.quiesced.Store(false)
	e.sched.enqueue(g)
}

// Step hands messages received from the network to their groups. A
// leader's message or a vote request for a group this node does not host
// creates an empty replica of it, unless that replica was removed here
// (see create.go);
// other messages for groups not hosted are dropped.
func (e *Engine) Step(msgs []Message) {
	for i := 0; i < len(msgs); {
		// Messages of one group usually arrive together: post them at once.
		j := i + 1
		for j < len(msgs) && msgs[j].Group == msgs[i].Group {
			j++
		}
		g := e.lookup(msgs[i].Group)
		tombstoned := false
		for k := i; g == nil && !tombstoned && k < j; k++ {
			if createsReplica(msgs[k].Msg.GetType()) {
				g, tombstoned = e.createForMessage(&msgs[k])
			}
		}
		if g != nil {
			g.postMsgs(msgs[i:j]...)
			wake := false
			for _, m := range msgs[i:j] {
				if !m.Quiesce && !isHeartbeatResp(m.Msg) {
					wake = true
				}
			}
			if wake {
				e.wake(g)
			} else {
				e.sched.enqueue(g)
			}
		} else if tombstoned {
			e.metrics.DroppedTombstoned.Add(uint64(j - i))
		} else {
			e.metrics.DroppedUnknownGroup.Add(uint64(j - i))
		}
		i = j
	}
}

// ReportUnreachable tells the group that its replica could not be reached,
// so the leader stops pipelining appends to it.
func (e *Engine) ReportUnreachable(id GroupID, replica ReplicaID) {
	if g := e.lookup(id); g != nil {
		g.postOp(func(g *group) { g.rn.ReportUnreachable(uint64(replica)) }, nil)
		e.sched.enqueue(g)
	}
}

// NodeDown is the node-liveness hook: the transport or placement calls it
// when node stops answering. Every quiesced group whose leader lives there
// resumes ticking, so its followers notice and elect a new leader.
func (e *Engine) NodeDown(node NodeID) {
	for _, g := range *e.list.Load() {
		if g.quiesced.Load() && g.leaderNode.Load() == uint64(node) {
			e.wake(g)
		}
	}
}

// Close stops the workers and fails every pending request with ErrStopped.
// It does not close the DB. Not safe to call concurrently with Process.
func (e *Engine) Close() error {
	if e.stopped.Swap(true) {
		return nil
	}
	e.sched.stop()
	e.workers.Wait()
	e.snapshot.Wait()
	e.mu.Lock()
	defer e.mu.Unlock()
	// After a disk failure, pending requests learn why (ErrDiskFailure).
	stopErr := e.stopErr()
	for _, g := range e.mu.groups {
		g.failAll(stopErr)
		if g.snap != nil {
			_ = g.snap.batch.Close()
			g.snap = nil
		}
	}
	return nil
}

// work is the loop of one worker goroutine.
func (e *Engine) work() {
	defer e.workers.Done()
	r := newRound(e)
	var batch []*group
	for {
		var ok bool
		batch, ok = e.sched.pop(batch[:0], e.cfg.MaxGroupsPerRound, true)
		if !ok {
			return
		}
		r.run(batch)
	}
}

// Process runs rounds until no group has work left, in the calling
// goroutine, and returns the number of groups processed. It is how the
// deterministic simulator drives an engine opened with Workers < 0; it must
// not be used when the engine runs its own workers.
func (e *Engine) Process() int {
	if !e.manual {
		panic("multiraft: Process called on an engine with workers")
	}
	e.roundMu.Lock()
	defer e.roundMu.Unlock()
	r := newRound(e)
	n := 0
	var batch []*group
	// Fail-stop: after a disk failure, close the engine here, in the
	// goroutine that drives it (see failStop).
	defer func() {
		if e.Err() != nil {
			_ = e.Close()
		}
	}()
	for !e.stopped.Load() && e.Err() == nil {
		var ok bool
		batch, ok = e.sched.pop(batch[:0], e.cfg.MaxGroupsPerRound, false)
		if !ok || len(batch) == 0 {
			return n
		}
		n += len(batch)
		r.run(batch)
	}
	return n
}

// failAll fails every pending request of g. Worker-owned (or the engine is
// stopped).
func (g *group) failAll(err error) {
	g.mu.Lock()
	props, reads, ops := g.mu.props, g.mu.reads, g.mu.ops
	g.mu.props, g.mu.reads, g.mu.ops = nil, nil, nil
	g.mu.Unlock()
	for _, op := range ops {
		if op.fut != nil {
			op.fut.resolve(nil, err)
		}
	}
	for _, p := range props {
		p.fut.resolve(nil, err)
	}
	for _, rq := range reads {
		rq.fut.resolve(nil, err)
	}
	amb := err
	if errors.Is(err, ErrStopped) || errors.Is(err, ErrGroupRemoved) {
		amb = fmt.Errorf("%w: %w", ErrAmbiguous, err)
	}
	for id, f := range g.pending {
		f.resolve(nil, amb)
		delete(g.pending, id)
	}
	if g.confFuture != nil {
		g.confFuture.resolve(nil, amb)
		g.confFuture = nil
	}
	g.failReads(err)
	for _, w := range g.transferWaiters {
		w.fut.resolve(nil, err)
	}
	g.transferWaiters = nil
}
