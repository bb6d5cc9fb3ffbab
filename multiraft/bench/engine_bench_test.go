package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/flotilla-kv/flotilla/internal/poll"
	"github.com/flotilla-kv/flotilla/multiraft"
)

// Shapes of the throughput benchmarks.
const (
	throughputGroups    = 48
	throughputProposers = 4096
	throughputDuration  = 5 * time.Second
	valueBytes          = 16
)

// nopTransport is the transport of a node whose groups have one replica:
// there is nobody to talk to.
type nopTransport struct{}

func (nopTransport) Send([]multiraft.Message)                   {}
func (nopTransport) SendSnapshot(s *multiraft.OutgoingSnapshot) { s.Close() }

// syncStats is a copy of the engine's sync counters.
type syncStats struct{ syncs, groups, entries, nanos uint64 }

func readSyncStats(e *multiraft.Engine) syncStats {
	m := e.Metrics()
	return syncStats{m.Syncs.Load(), m.SyncGroups.Load(), m.SyncEntries.Load(), m.SyncNanos.Load()}
}

func (s syncStats) minus(o syncStats) syncStats {
	return syncStats{s.syncs - o.syncs, s.groups - o.groups, s.entries - o.entries, s.nanos - o.nanos}
}

// report reports the mean groups and entries per sync and the mean sync
// latency of the interval s covers.
func (s syncStats) report(b *testing.B) {
	if s.syncs == 0 {
		b.Errorf("no synced writes")
		return
	}
	n := float64(s.syncs)
	b.ReportMetric(float64(s.groups)/n, "groups/sync")
	b.ReportMetric(float64(s.entries)/n, "entries/sync")
	b.ReportMetric(float64(s.nanos)/n/1e6, "sync-ms")
}

// closedLoop runs proposers goroutines for d, each calling propose in a
// closed loop, and returns how many calls succeeded and failed within d.
// Calls in flight at the end complete but are not counted.
func closedLoop(tb testing.TB, proposers int, d time.Duration, propose func(proposer int, seq uint64) error) (ok, failed uint64, cpu cpuUse) {
	var stop atomic.Bool
	var okN, failN atomic.Uint64
	var wg sync.WaitGroup
	for p := range proposers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var nOK, nFail uint64
			for seq := uint64(0); !stop.Load(); seq++ {
				err := propose(p, seq)
				if stop.Load() {
					break
				}
				if err != nil {
					nFail++
				} else {
					nOK++
				}
			}
			okN.Add(nOK)
			failN.Add(nFail)
		}()
	}
	w := startCPUWindow(tb)
	time.Sleep(d)
	stop.Store(true)
	cpu.own, cpu.other = w.end()
	wg.Wait()
	return okN.Load(), failN.Load(), cpu
}

// cpuUse is the CPU used during a measurement, in percent of one core, by
// this process and by the rest of the machine (other tenants of a shared
// host: a figure to read the others against).
type cpuUse struct{ own, other float64 }

// report reports the CPU use, and the CPU this process spent per
// operation given ops per second.
func (c cpuUse) report(b *testing.B, opsPerSec float64) {
	b.ReportMetric(c.own, "cpu-%core")
	b.ReportMetric(c.other, "others-cpu-%core")
	if opsPerSec > 0 {
		b.ReportMetric(c.own/100/opsPerSec*1e6, "cpu-µs/proposal")
	}
}

// command returns the put command of proposer p's seq-th call: the key is
// p, the value valueBytes long and stamped with seq.
func command(p int, seq uint64) []byte {
	var key [8]byte
	var value [valueBytes]byte
	binary.BigEndian.PutUint64(key[:], uint64(p))
	binary.LittleEndian.PutUint64(value[:], seq)
	return EncodePut(key[:], value[:])
}

// BenchmarkSingleReplicaFsync measures group commit on a real disk: one
// engine with its default workers, 48 single-replica groups, synced Pebble
// writes, 4096 proposers in a closed loop for 5 s.
func BenchmarkSingleReplicaFsync(b *testing.B) {
	for range b.N {
		dir := b.TempDir()
		lat, err := fsyncLatencies(dir, 200)
		if err != nil {
			b.Fatal(err)
		}
		n := openNode(b, 1, vfs.Default, filepath.Join(dir, "db"), nopTransport{}, nil)
		createGroups(b, 1, throughputGroups, n)
		stopTicker := startTicker(b, n.e)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if _, err := elect(ctx, 1, throughputGroups, n); err != nil {
			b.Fatal(err)
		}
		before := readSyncStats(n.e)
		ok, failed, cpu := closedLoop(b, throughputProposers, throughputDuration, func(p int, seq uint64) error {
			_, err := n.e.Propose(ctx, multiraft.GroupID(1+p%throughputGroups), command(p, seq))
			return err
		})
		stats := readSyncStats(n.e).minus(before)
		cancel()
		stopTicker()
		n.close(b)

		b.ReportMetric(0, "ns/op")
		rate := float64(ok) / throughputDuration.Seconds()
		b.ReportMetric(rate, "proposals/s")
		b.ReportMetric(float64(failed), "failed")
		cpu.report(b, rate)
		stats.report(b)
		b.ReportMetric(ms(percentile(lat, 50)), "fsync-p50-ms")
	}
}

// BenchmarkThreeReplicasInMemory measures replication: three engines in
// one process over MemNetwork, Pebble on vfs.NewMem, 48 groups of three
// replicas with leaders spread over the engines, 4096 proposers sending
// to their group's leader for 5 s.
func BenchmarkThreeReplicasInMemory(b *testing.B) {
	for range b.N {
		net := newNetwork(b)
		nodes, engines := openMemNodes(b, net, 3)
		createGroups(b, 1, throughputGroups, nodes...)
		stopTicker := startTicker(b, engines...)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		leaders, err := elect(ctx, 1, throughputGroups, nodes...)
		if err != nil {
			b.Fatal(err)
		}
		// leaderOf[g-1] is the index of the node believed to lead g.
		leaderOf := make([]atomic.Int32, throughputGroups)
		for i, l := range leaders {
			leaderOf[i].Store(int32(l))
		}
		before := make([]syncStats, len(nodes))
		for i, n := range nodes {
			before[i] = readSyncStats(n.e)
		}
		ok, failed, cpu := closedLoop(b, throughputProposers, throughputDuration, func(p int, seq uint64) error {
			gi := p % throughputGroups
			_, err := engines[leaderOf[gi].Load()].Propose(ctx, multiraft.GroupID(1+gi), command(p, seq))
			if nl := (*multiraft.NotLeaderError)(nil); errors.As(err, &nl) && nl.Node != 0 {
				leaderOf[gi].Store(int32(nl.Node - 1))
			}
			return err
		})
		var stats syncStats
		for i, n := range nodes {
			s := readSyncStats(n.e).minus(before[i])
			stats = syncStats{stats.syncs + s.syncs, stats.groups + s.groups, stats.entries + s.entries, stats.nanos + s.nanos}
		}
		cancel()
		stopTicker()
		closeMemNodes(b, net, nodes)

		b.ReportMetric(0, "ns/op")
		rate := float64(ok) / throughputDuration.Seconds()
		b.ReportMetric(rate, "proposals/s")
		b.ReportMetric(float64(failed), "failed")
		cpu.report(b, rate)
		stats.report(b)
	}
}

// Shape of the idle and restart benchmarks.
const (
	manyGroups   = 10000
	idleWindow   = 10 * time.Second
	quiescedFrac = 0.99
	// settleTimeout bounds the wait for 10,000 new groups to elect and
	// quiesce; it takes seconds when the engines keep up.
	settleTimeout = 2 * time.Minute
)

// heapInuse returns HeapInuse after a full collection.
func heapInuse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// BenchmarkIdle10kGroups measures what 10,000 quiesced groups of three
// replicas cost: three engines in one process over MemNetwork and
// vfs.NewMem, ticked every TickInterval. It reports the process's CPU over
// a 10 s window as a percentage of one core, for all three engines and per
// engine, and the heap per replica.
func BenchmarkIdle10kGroups(b *testing.B) {
	for range b.N {
		net := newNetwork(b)
		nodes, engines := openMemNodes(b, net, 3)
		heapBefore := heapInuse()
		createStart := time.Now()
		createGroups(b, 1, manyGroups, nodes...)
		createTime := time.Since(createStart)
		stopTicker := startTicker(b, engines...)
		ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
		warned := warnings.Load()
		settleStart := time.Now()
		campaign(1, manyGroups, nodes...)
		quiesced, err := waitQuiet(ctx, 1, manyGroups, quiescedFrac, nodes...)
		if err != nil {
			b.Fatalf("waiting for leaders and quiescence (%d of %d replicas quiesced, %d raft warnings): %v",
				quiesced, 3*manyGroups, warnings.Load()-warned, err)
		}
		settleTime := time.Since(settleStart)
		heapAfter := heapInuse()

		w := startCPUWindow(b)
		time.Sleep(idleWindow)
		pct, others := w.end()

		cancel()
		stopTicker()
		closeMemNodes(b, net, nodes)

		b.ReportMetric(0, "ns/op")
		b.ReportMetric(pct, "cpu-%core")
		b.ReportMetric(others, "others-cpu-%core")
		b.ReportMetric(pct/3, "cpu-%core/engine")
		replicaBytes := float64(int64(heapAfter)-int64(heapBefore)) / (3 * manyGroups)
		b.ReportMetric(replicaBytes/1024, "heap-KiB/replica")
		b.ReportMetric(100*float64(quiesced)/(3*manyGroups), "quiesced-%")
		b.ReportMetric(createTime.Seconds(), "create-s")
		b.ReportMetric(settleTime.Seconds(), "settle-s")
		b.ReportMetric(float64(warnings.Load()-warned), "raft-warnings")
	}
}

// BenchmarkRestart10kGroups measures recovery: an engine with 10,000
// single-replica groups, each with a few entries in its log, on a real
// disk, is closed and reopened. It reports the time from opening Pebble to
// Open's return (recovery done: the node is ready) and until every group
// has elected its leader again, with the ticker running at TickInterval.
func BenchmarkRestart10kGroups(b *testing.B) {
	for range b.N {
		dir := filepath.Join(b.TempDir(), "db")
		n := openNode(b, 1, vfs.Default, dir, nopTransport{}, nil)
		createGroups(b, 1, manyGroups, n)
		stopTicker := startTicker(b, n.e)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		if _, err := elect(ctx, 1, manyGroups, n); err != nil {
			b.Fatal(err)
		}
		ok, failed, _ := closedLoop(b, 256, time.Second, func(p int, seq uint64) error {
			g := multiraft.GroupID(1 + (uint64(p)*7919+seq*256)%manyGroups)
			_, err := n.e.Propose(ctx, g, command(p, seq))
			return err
		})
		stopTicker()
		n.close(b)
		if failed > 0 {
			b.Fatalf("%d of %d proposals failed before the restart", failed, ok+failed)
		}

		start := time.Now()
		n = openNode(b, 1, vfs.Default, dir, nopTransport{}, nil)
		ready := time.Since(start)
		stopTicker = startTicker(b, n.e)
		err := poll.Until(ctx, 0, 10*time.Millisecond, func(context.Context) error {
			if got := n.e.Metrics().LeadersAcquired.Load(); got < manyGroups {
				return fmt.Errorf("%d of %d groups led", got, manyGroups)
			}
			return nil
		})
		led := time.Since(start)
		if err != nil {
			b.Fatalf("after restart %d of %d groups elected a leader: %v", n.e.Metrics().LeadersAcquired.Load(), manyGroups, err)
		}
		groups := len(n.e.Groups())
		cancel()
		stopTicker()
		n.close(b)
		if groups != manyGroups {
			b.Fatalf("recovered %d groups, want %d", groups, manyGroups)
		}

		b.ReportMetric(0, "ns/op")
		b.ReportMetric(ms(ready), "open-ms")
		b.ReportMetric(ms(led), "all-led-ms")
		b.ReportMetric(float64(ok), "entries-before")
	}
}
