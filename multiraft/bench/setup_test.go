package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/flotilla-kv/flotilla/internal/cpustat"
	"github.com/flotilla-kv/flotilla/internal/poll"
	"github.com/flotilla-kv/flotilla/internal/testutil"
	"github.com/flotilla-kv/flotilla/multiraft"
)

// TickInterval is the period of the ticker goroutine driving every engine.
const TickInterval = 100 * time.Millisecond

// node is one engine over its own Pebble instance.
type node struct {
	id  multiraft.NodeID
	dir string
	fs  vfs.FS
	db  *pebble.DB
	e   *multiraft.Engine
}

type quietPebbleLogger struct{}

func (quietPebbleLogger) Infof(string, ...any)  {}
func (quietPebbleLogger) Errorf(string, ...any) {}
func (quietPebbleLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

// engineLogger counts the engines' warnings and errors in warnings and
// drops every record: a storm of elections logs thousands of lines, and
// the benchmarks report the count instead.
var engineLogger = slog.New(countingHandler{})

// warnings counts the log records of the engines at warning level or above.
var warnings atomic.Uint64

type countingHandler struct{}

func (countingHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (countingHandler) Handle(context.Context, slog.Record) error {
	warnings.Add(1)
	return nil
}
func (h countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countingHandler) WithGroup(string) slog.Handler      { return h }

// openNode opens Pebble in dir on fs and an engine over it with real
// workers; tweak adjusts the config. The node is closed when the test
// ends, if it was not closed before.
func openNode(tb testing.TB, id multiraft.NodeID, fs vfs.FS, dir string, tr multiraft.Transport, tweak func(*multiraft.Config)) *node {
	tb.Helper()
	n := &node{id: id, dir: dir, fs: fs}
	var err error
	n.db, err = pebble.Open(dir, &pebble.Options{FS: fs, Logger: quietPebbleLogger{}})
	if err != nil {
		tb.Fatal(err)
	}
	cfg := multiraft.Config{NodeID: id, DB: n.db, Transport: tr, NewStateMachine: NewKV, Logger: engineLogger}
	if tweak != nil {
		tweak(&cfg)
	}
	n.e, err = multiraft.Open(cfg)
	if err != nil {
		_ = n.db.Close()
		tb.Fatal(err)
	}
	tb.Cleanup(func() { n.close(tb) })
	return n
}

// newNetwork returns a MemNetwork closed when the test ends, after the
// nodes opened later.
func newNetwork(tb testing.TB) *MemNetwork {
	net := NewMemNetwork()
	tb.Cleanup(net.Close)
	return net
}

// openMemNodes opens count nodes with IDs 1..count on vfs.NewMem, attached
// to net.
func openMemNodes(tb testing.TB, net *MemNetwork, count int) ([]*node, []*multiraft.Engine) {
	nodes := make([]*node, count)
	engines := make([]*multiraft.Engine, count)
	for i := range nodes {
		id := multiraft.NodeID(i + 1)
		nodes[i] = openNode(tb, id, vfs.NewMem(), "", net.Transport(id), nil)
		engines[i] = nodes[i].e
		net.Attach(id, nodes[i].e)
	}
	return nodes, engines
}

// closeMemNodes detaches nodes from net and closes them, then closes net:
// the end of what openMemNodes started.
func closeMemNodes(tb testing.TB, net *MemNetwork, nodes []*node) {
	tb.Helper()
	for _, n := range nodes {
		net.Detach(n.id)
		n.close(tb)
	}
	net.Close()
}

// close closes the engine, then its Pebble instance. Closing a closed
// node does nothing.
func (n *node) close(tb testing.TB) {
	tb.Helper()
	if n.e == nil {
		return
	}
	if err := n.e.Close(); err != nil {
		tb.Error(err)
	}
	if err := n.db.Close(); err != nil {
		tb.Error(err)
	}
	n.e, n.db = nil, nil
}

// startTicker runs each engine's RunTicker, one goroutine per engine
// ticking every TickInterval, until the returned stop is called or the
// test ends.
func startTicker(tb testing.TB, engines ...*multiraft.Engine) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, e := range engines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.RunTicker(ctx, TickInterval)
		}()
	}
	stop = func() { cancel(); wg.Wait() }
	tb.Cleanup(stop)
	return stop
}

// members returns the membership of group with one replica on each node:
// replica ID group*10 + node.
func members(group multiraft.GroupID, nodes ...*node) multiraft.Membership {
	var m multiraft.Membership
	for _, n := range nodes {
		m.Replicas = append(m.Replicas, multiraft.Replica{ReplicaID: replicaOf(group, n.id), NodeID: n.id})
	}
	return m
}

func replicaOf(group multiraft.GroupID, n multiraft.NodeID) multiraft.ReplicaID {
	return multiraft.ReplicaID(uint64(group)*10 + uint64(n))
}

// createGroups creates groups [first, first+count) with a replica on every
// node, from parallel goroutines so their synced writes share fsyncs.
func createGroups(tb testing.TB, first multiraft.GroupID, count int, nodes ...*node) {
	tb.Helper()
	const parallel = 64
	errs := make(chan error, parallel)
	var wg sync.WaitGroup
	for w := range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < count; i += parallel {
				g := first + multiraft.GroupID(i)
				m := members(g, nodes...)
				for _, n := range nodes {
					if err := n.e.CreateGroup(g, replicaOf(g, n.id), m, nil); err != nil {
						errs <- fmt.Errorf("create group %d on node %d: %w", g, n.id, err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatal(err)
	}
}

// campaign makes the replica on nodes[g % len(nodes)] campaign in every
// group of [first, first+count), so leaders spread evenly over the nodes.
func campaign(first multiraft.GroupID, count int, nodes ...*node) {
	for i := range count {
		g := first + multiraft.GroupID(i)
		nodes[int(g)%len(nodes)].e.Campaign(g)
	}
}

// leaders returns, for every group of [first, first+count), the index in
// nodes of the node whose replica leads it (-1 where none does), and how
// many replicas are quiesced. It reads the engines' published summaries,
// which wakes no group.
func leaders(first multiraft.GroupID, count int, nodes ...*node) (lead []int, quiesced int) {
	lead = make([]int, count)
	for i := range lead {
		lead[i] = -1
	}
	for i, n := range nodes {
		for _, s := range n.e.Summaries() {
			if s.Leading && s.Group >= first && s.Group < first+multiraft.GroupID(count) {
				lead[s.Group-first] = i
			}
			if s.Quiesced {
				quiesced++
			}
		}
	}
	return lead, quiesced
}

// elect campaigns in every group of [first, first+count) and waits until
// each has a leader. It returns, per group, the index of the leading node.
func elect(ctx context.Context, first multiraft.GroupID, count int, nodes ...*node) ([]int, error) {
	campaign(first, count, nodes...)
	var lead []int
	err := poll.Until(ctx, 0, 10*time.Millisecond, func(context.Context) error {
		lead, _ = leaders(first, count, nodes...)
		if i := slices.Index(lead, -1); i >= 0 {
			return fmt.Errorf("group %d has no leader", first+multiraft.GroupID(i))
		}
		return nil
	})
	return lead, err
}

// waitQuiet waits until every group of [first, first+count) has a leader
// and at least frac of all replicas are quiesced.
func waitQuiet(ctx context.Context, first multiraft.GroupID, count int, frac float64, nodes ...*node) (quiesced int, err error) {
	err = poll.Until(ctx, 0, 100*time.Millisecond, func(context.Context) error {
		var lead []int
		lead, quiesced = leaders(first, count, nodes...)
		if i := slices.Index(lead, -1); i >= 0 {
			return fmt.Errorf("group %d has no leader", first+multiraft.GroupID(i))
		}
		if float64(quiesced) < frac*float64(count*len(nodes)) {
			return fmt.Errorf("%d of %d replicas quiesced, want %.0f%%", quiesced, count*len(nodes), 100*frac)
		}
		return nil
	})
	return quiesced, err
}

// cpuWindow measures the CPU used between its start and end: by this
// process, and by everything else on the machine.
type cpuWindow struct {
	tb        testing.TB
	own, host time.Duration
	wall      time.Time
}

func startCPUWindow(tb testing.TB) cpuWindow {
	return cpuWindow{tb, testutil.ProcessCPU(tb), cpustat.Host(), time.Now()}
}

// end returns this process's CPU and the other processes' CPU, in percent
// of one core, since w started.
func (w cpuWindow) end() (ownPct, otherPct float64) {
	own, host, wall := testutil.ProcessCPU(w.tb)-w.own, cpustat.Host()-w.host, time.Since(w.wall)
	return 100 * float64(own) / float64(wall), 100 * float64(max(host-own, 0)) / float64(wall)
}

// fsyncLatencies writes 4 KiB and fsyncs it n times in a file in dir and
// returns the latencies, sorted.
func fsyncLatencies(dir string, n int) ([]time.Duration, error) {
	f, err := os.Create(filepath.Join(dir, "fsync-probe"))
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	block := make([]byte, 4<<10)
	lat := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		if _, err := f.Write(block); err != nil {
			return nil, err
		}
		if err := f.Sync(); err != nil {
			return nil, err
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	return lat, nil
}

// percentile returns the p-th percentile (0 < p <= 100) of sorted.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// ms converts d to float milliseconds for ReportMetric.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// isSurelyNotApplied reports whether a failed proposal certainly did not
// apply, so retrying it cannot apply it twice.
func isSurelyNotApplied(err error) bool {
	return errors.Is(err, multiraft.ErrNotLeader) || errors.Is(err, multiraft.ErrProposalDropped)
}
