package sim

import (
	"fmt"
	"log/slog"
	"runtime"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/flotilla-kv/flotilla/internal/pebbleopts"
	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/placement/tso"
	"github.com/flotilla-kv/flotilla/shard"
)

// node is one simulated process: a Pebble instance on its own crashable
// in-memory filesystem and a multiraft.Engine in manual mode over it.
// While the node is down, db and e are nil and fs holds what survived the
// crash.
type node struct {
	s  *simulation
	id multiraft.NodeID
	// addr is the node's address in the catalogue ("n3", "p101").
	addr string
	fs   *vfs.MemFS
	// disk injects disk faults into n.fs (disk.go); under bugLyingDisk
	// the node crashes at lieCrashAt.
	disk       diskFault
	lieCrashAt int
	db         *pebble.DB
	e          *multiraft.Engine
	// incarnation counts starts; a snapshot report or a read result from
	// an older incarnation is discarded.
	incarnation int
	// restartAt is the step at which a down node comes back.
	restartAt int
	// tickRate is the speed of the node's clock in 1/1000 of the nominal
	// rate (one tick every stepsPerTick steps); tickAcc accumulates it
	// every step, up or down, and a tick is due at each stepsPerTick*1000.
	// See skew.go.
	tickRate, tickAcc int
	// ticks counts the engine's Ticks since it started (the engine's own
	// tick counter, which leases are measured in).
	ticks uint64
	// Fleet runs (fleet.go): store serves a shardnode's shards; pl is set
	// on a placement process; runner is the actor of its placement
	// service's scheduling loop, reporter a shardnode's heartbeats.
	store    *shard.Store
	pl       *placementProc
	runner   *actor
	reporter *actor
	// leases is the node's lessor and read fence (lease.go; nil while
	// down, or without leases); leaseClock its lessor's clock, in
	// microseconds since epoch.
	leases     *nodeLeases
	leaseClock int64
	// joined: the node has started once (fleet nodes join over time;
	// every node of an engine run joins at boot).
	joined bool
	// created: the shards whose replica the Admin service created here;
	// known: the groups seen hosted here (bugLoseSplitReplica); hosted:
	// the groups the samples saw here (to count re-adds).
	created, known, hosted map[multiraft.GroupID]bool
}

func (n *node) up() bool { return n.e != nil }

// start opens Pebble and the engine over n.fs, recovering what is there.
func (n *node) start() error {
	n.disk.on.Store(false) // a restart replaces a failed disk
	db, err := pebble.Open("", &pebble.Options{
		FS:       n.pebbleFS(),
		Logger:   quietLogger{},
		Comparer: pebbleopts.Comparer,
		// Compactions run on Pebble's own goroutines; they never change
		// what a read returns, but turning them off keeps the process
		// quieter and the run cheaper.
		DisableAutomaticCompactions: true,
	})
	if err != nil {
		return fmt.Errorf("sim: n%d: opening pebble: %w", n.id, err)
	}
	newSM := n.s.sm.newStateMachine
	switch {
	case n.pl != nil:
		newSM = n.pl.open(n).StateMachineFunc()
	case n.s.cfg.Backend == "shard":
		// The store creates shards and reads descriptors (fleet runs),
		// serves watches and reads at a revision (watch.go): the
		// simulation's clients stamp and propose their writes themselves
		// (shardBackend.encode), and it never resolves a shard, so its
		// oracle is never asked.
		if n.store, err = shard.NewStore(n.s.shardConfig(), tso.Local()); err != nil {
			panic(err)
		}
		newSM = n.store.StateMachineFunc()
	}
	cfg := multiraft.Config{
		NodeID:             n.id,
		DB:                 db,
		Transport:          transport{net: n.s.net, node: n},
		NewStateMachine:    newSM,
		Logger:             slog.New(slog.DiscardHandler),
		Workers:            -1,
		LogTruncateEntries: n.s.prof.logTruncateEntries,
		QuiesceAfterTicks:  n.s.prof.quiesceAfterTicks,
		LeaseTicks:         leaseTicks,
	}
	e, err := multiraft.Open(cfg)
	if err != nil {
		_ = db.Close()
		return fmt.Errorf("sim: n%d: opening engine: %w", n.id, err)
	}
	n.db, n.e = db, e
	n.incarnation++
	n.ticks = 0
	if n.store != nil {
		n.store.SetEngine(e)
	}
	n.s.startLeases(n)
	if n.s.fleet != nil {
		return n.s.started(n)
	}
	return nil
}

// pebbleFS is the filesystem Pebble sees: n.fs with disk faults.
func (n *node) pebbleFS() vfs.FS {
	var fs vfs.FS = n.fs
	if n.disk.lie {
		fs = lyingFS{FS: fs, d: &n.disk}
	}
	return errorfs.Wrap(fs, &n.disk)
}

// crash stops the node as a power failure would: the filesystem keeps
// only what was synced. The crash image is taken before the engine and
// Pebble close (closing would flush), and after Pebble finished any
// memtable flush it had started in the background, so that what survives
// depends only on the order of operations, never on goroutine timing.
func (n *node) crash() {
	waitForFlushes(n.db)
	crashed := n.fs.CrashClone(vfs.CrashCloneCfg{})
	n.stop()
	n.fs = crashed
}

// stop closes the engine and Pebble. Pending requests fail with
// ErrStopped (writes already in the log with ErrAmbiguous).
func (n *node) stop() {
	if n.e == nil {
		return
	}
	n.s.watchNodeDown(n)
	if n.s.actors != nil {
		// The process's goroutines die with it.
		n.s.actors.kill(n)
		n.leases = nil
	}
	if n.s.fleet != nil {
		n.s.rpc.crashed(n)
		n.runner, n.reporter = nil, nil
		if n.pl != nil {
			n.pl.retire()
		}
	}
	_ = n.e.Close()
	func() {
		// After a disk failure Pebble's WAL is broken and Close may
		// panic (through quietLogger.Fatalf): the node is gone either way.
		defer func() {
			if r := recover(); r != nil && !n.disk.on.Load() {
				panic(r)
			}
		}()
		_ = n.db.Close()
	}()
	n.e, n.db = nil, nil
}

// waitForFlushes returns once db has no memtable flush in progress. A
// flush makes unsynced writes durable. Pebble decides to flush inside a
// commit (deterministically, from memtable sizes) but flushes on a
// goroutine of its own; waiting for it before a crash image makes what
// survives the crash deterministic.
func waitForFlushes(db *pebble.DB) {
	for db.Metrics().Flush.NumInProgress > 0 {
		runtime.Gosched()
	}
}

// quietLogger silences Pebble.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}
