package sim

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/flotilla-kv/flotilla/multiraft"
)

// Disk faults. Every node's Pebble runs over errorfs wrapping its
// crashable MemFS. A disk fault makes every sync of the node's WAL fail
// from some step on, as a failing disk would. The engine must fail-stop
// (multiraft/diskfailure.go): acknowledge nothing that the failed sync
// was to make durable, and close itself at the end of the Process that
// met the failure. The simulator then treats the node as crashed: only
// what was synced before the fault survives (the crash image), and the
// node restarts later with the fault cleared. The checks that follow
// are those of every crash: linearizability, no lost write, replicas that
// agree, and a node that recovers from its image and catches up.
//
// Only syncs fail, never writes: a sync is waited for by the commit that
// asked for it, so the failure meets the engine at a point that depends
// on the order of operations only, never on when Pebble's background
// goroutines run, and the run stays deterministic.
//
// A fault is armed right after a memtable flush, which starts a new WAL:
// if the first sync to fail were the one Pebble makes when it closes a
// full WAL to rotate it (DB.rotateWAL, inside a commit), Pebble would
// panic with its mutex released and the deferred unlock would kill the
// whole process ("fatal error: sync: unlock of unlocked mutex"), which
// neither the engine nor the simulator can recover from. (A real
// shardnode meeting that dies, which is still fail-stop.) With a fresh
// WAL, the engine's next synced commit meets the failure first.

// diskFault is one node's fault injector. Pebble may call it from its own
// goroutines, hence the atomic.
type diskFault struct {
	on atomic.Bool
	// lie plants bugLyingDisk: syncs of an armed disk succeed without
	// syncing (lyingFS) instead of failing. Set before the node opens.
	lie bool
}

var errInjectedSync = errors.New("sim: injected disk failure (WAL sync)")

func (d *diskFault) String() string { return "sim.diskFault" }

// MaybeError implements errorfs.Injector: while on, every sync of a WAL
// file fails.
func (d *diskFault) MaybeError(op errorfs.Op) error {
	if !d.on.Load() || d.lie || !strings.HasSuffix(op.Path, ".log") {
		return nil
	}
	switch op.Kind {
	case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
		return errInjectedSync
	}
	return nil
}

// breakDisk arms a disk fault on a random live node; it fail-stops at its
// next WAL sync.
func (s *simulation) breakDisk() {
	var up []*node
	for _, n := range s.nodes {
		if n.up() && !n.disk.on.Load() {
			up = append(up, n)
		}
	}
	if len(up) == 0 {
		return
	}
	n := up[s.rng.IntN(len(up))]
	s.stats.DiskFaults++
	s.tracef("disk fault n%d", n.id)
	if err := n.db.Flush(); err != nil {
		panic(fmt.Sprintf("sim: n%d: flush before a disk fault: %v", n.id, err))
	}
	n.disk.on.Store(true)
	if n.disk.lie {
		// The lying disk is noticed only when the node crashes.
		n.lieCrashAt = s.step + 10 + s.rng.IntN(60)
	}
}

// reapFailedEngines finds the nodes whose engine stopped itself after a
// disk failure and takes them down like a crash, to restart with the
// fault cleared.
func (s *simulation) reapFailedEngines() {
	for _, n := range s.nodes {
		if !n.up() || !n.disk.on.Load() {
			continue
		}
		if n.disk.lie {
			if s.step >= n.lieCrashAt {
				s.crash(n, 2+s.rng.IntN(20))
			}
			continue
		}
		_, err := n.e.StatusFuture(1).Result()
		if !errors.Is(err, multiraft.ErrStopped) {
			continue
		}
		s.stats.DiskStops++
		down := 2 + s.rng.IntN(100)
		s.tracef("n%d stopped after its disk failed; restart in %d steps", n.id, down)
		n.crash()
		n.restartAt = s.step + down
		for _, o := range s.nodes {
			if o.up() {
				o.e.NodeDown(n.id)
			}
		}
	}
}

// healDisks clears every disk fault that has not stopped its node yet.
func (s *simulation) healDisks() {
	for _, n := range s.nodes {
		n.disk.on.Store(false)
	}
}

// lyingFS plants bugLyingDisk: while its node's fault is armed, a sync of
// a WAL file reports success without syncing, as a disk whose write cache
// lies would; the node's next crash then loses writes it claimed durable.
type lyingFS struct {
	vfs.FS
	d *diskFault
}

func (fs lyingFS) wrap(f vfs.File, name string, err error) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(name, ".log") {
		return f, err
	}
	return lyingFile{File: f, d: fs.d}, nil
}

func (fs lyingFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, category)
	return fs.wrap(f, name, err)
}

func (fs lyingFS) OpenReadWrite(name string, category vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.OpenReadWrite(name, category, opts...)
	return fs.wrap(f, name, err)
}

func (fs lyingFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, category)
	return fs.wrap(f, newname, err)
}

type lyingFile struct {
	vfs.File
	d *diskFault
}

func (f lyingFile) Sync() error {
	if f.d.on.Load() {
		return nil
	}
	return f.File.Sync()
}

func (f lyingFile) SyncData() error {
	if f.d.on.Load() {
		return nil
	}
	return f.File.SyncData()
}

func (f lyingFile) SyncTo(length int64) (bool, error) {
	if f.d.on.Load() {
		return true, nil
	}
	return f.File.SyncTo(length)
}
