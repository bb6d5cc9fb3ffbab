package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/cockroachdb/pebble/v2"

	"github.com/flotilla-kv/flotilla/internal/keys"
	"github.com/flotilla-kv/flotilla/internal/pebbleopts"
	"github.com/flotilla-kv/flotilla/internal/poll"
	"github.com/flotilla-kv/flotilla/multiraft"
)

// EngineOptions configures RunEngine. A zero field takes its default.
type EngineOptions struct {
	// Dir holds the Pebble store. Required.
	Dir string
	// Groups is the number of single-replica groups. Default 48.
	Groups int
	// Proposers is the number of goroutines proposing in a closed loop,
	// dealt round-robin to the groups. Default 4096.
	Proposers int
	// ValueBytes is the size of each proposed value. Default 16.
	ValueBytes int
	// Duration is the measured window. Default 5 s.
	Duration time.Duration
	// Workers is multiraft.Config.Workers (0: the engine's default).
	Workers int
	// FsyncSamples is the size of the disk probe run first. Default 200.
	FsyncSamples int
	// Progress, when set, receives the progress once a second.
	Progress func(Progress)
}

// EngineResult is what RunEngine measured.
type EngineResult struct {
	Options EngineOptions
	Elapsed time.Duration
	// Proposals succeeded (resolved at apply) within the window; Failed
	// did not.
	Proposals, Failed int64
	// Latency of the successful proposals, in µs.
	Latency *hdrhistogram.Histogram
	// Syncs is the number of synced raft-state writes in the window;
	// GroupsPerSync and EntriesPerSync their mean load; SyncMean their
	// mean latency (from the engine's Metrics).
	Syncs                         uint64
	GroupsPerSync, EntriesPerSync float64
	SyncMean                      time.Duration
	// CPU of this process (the engine and the proposers) and of the rest
	// of the machine during the window.
	CPU   CPUUse
	Fsync FsyncProbe
}

// ProposalsPerSec is the window's proposal throughput.
func (r *EngineResult) ProposalsPerSec() float64 { return float64(r.Proposals) / r.Elapsed.Seconds() }

// RunEngine measures the multiraft engine alone, in this process: one
// engine over Pebble in o.Dir with synced writes, o.Groups groups of one
// replica each (so every proposal costs a synced write but no network),
// o.Proposers goroutines proposing o.ValueBytes-byte puts in a closed
// loop for o.Duration. It shows what group commit buys: entries and groups
// per sync.
func RunEngine(ctx context.Context, o EngineOptions) (*EngineResult, error) {
	if o.Groups == 0 {
		o.Groups = 48
	}
	if o.Proposers == 0 {
		o.Proposers = 4096
	}
	if o.ValueBytes == 0 {
		o.ValueBytes = 16
	}
	if o.Duration == 0 {
		o.Duration = 5 * time.Second
	}
	if o.FsyncSamples == 0 {
		o.FsyncSamples = 200
	}
	if o.Dir == "" || o.Groups < 1 || o.Proposers < 1 || o.ValueBytes < 0 || o.Duration < 0 || o.FsyncSamples < 1 {
		return nil, fmt.Errorf("%w: engine options %+v", ErrInvalidConfig, o)
	}
	res := &EngineResult{Options: o, Latency: NewHistogram()}
	var err error
	if res.Fsync, err = ProbeFsync(o.Dir, o.FsyncSamples); err != nil {
		return nil, err
	}
	db, err := pebble.Open(filepath.Join(o.Dir, "db"), pebbleopts.Options(quietPebble{}, 0))
	if err != nil {
		return nil, err
	}
	defer db.Close()
	e, err := multiraft.Open(multiraft.Config{
		NodeID: 1, DB: db, Transport: nopTransport{}, Workers: o.Workers,
		NewStateMachine: func(g multiraft.GroupID, _ multiraft.ReplicaID, _ pebble.Reader) (multiraft.StateMachine, error) {
			return engineKV{g}, nil
		},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return nil, err
	}
	defer e.Close()
	tctx, stopTicker := context.WithCancel(ctx)
	defer stopTicker()
	go e.RunTicker(tctx, 100*time.Millisecond)

	for g := 1; g <= o.Groups; g++ {
		id := multiraft.GroupID(g)
		m := multiraft.Membership{Replicas: []multiraft.Replica{{ReplicaID: multiraft.ReplicaID(g), NodeID: 1}}}
		if err := e.CreateGroup(id, multiraft.ReplicaID(g), m, nil); err != nil {
			return nil, err
		}
		e.Campaign(id)
	}
	if err := poll.Until(ctx, 60*time.Second, 10*time.Millisecond, func(context.Context) error {
		if n := e.Leaders(); n < o.Groups {
			return fmt.Errorf("%d of %d groups have elected themselves", n, o.Groups)
		}
		return nil
	}); err != nil {
		return nil, err
	}

	var (
		measuring, stopped atomic.Bool
		ok, failed         atomic.Int64
		mu                 sync.Mutex
		wg                 sync.WaitGroup
	)
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for p := range o.Proposers {
		wg.Go(func() {
			h := NewHistogram()
			var nOK, nFail int64
			cmd := make([]byte, 8+o.ValueBytes)
			binary.BigEndian.PutUint64(cmd, uint64(p))
			g := multiraft.GroupID(1 + p%o.Groups)
			for seq := uint64(0); !stopped.Load() && pctx.Err() == nil; seq++ {
				if o.ValueBytes >= 8 {
					binary.LittleEndian.PutUint64(cmd[8:], seq)
				}
				in := measuring.Load()
				t0 := time.Now()
				_, err := e.Propose(pctx, g, cmd)
				lat := time.Since(t0)
				if !in || stopped.Load() {
					continue
				}
				if err != nil {
					nFail++
					continue
				}
				nOK++
				RecordLatency(h, lat)
			}
			mu.Lock()
			res.Latency.Merge(h)
			mu.Unlock()
			ok.Add(nOK)
			failed.Add(nFail)
		})
	}
	// A short warm-up lets every proposer reach its loop.
	warm := time.NewTimer(time.Second)
	select {
	case <-ctx.Done():
		warm.Stop()
		stopped.Store(true)
		cancel()
		wg.Wait()
		return nil, ctx.Err()
	case <-warm.C:
	}
	m := e.Metrics()
	syncs0, groups0, entries0, nanos0 := m.Syncs.Load(), m.SyncGroups.Load(), m.SyncEntries.Load(), m.SyncNanos.Load()
	applied0 := m.EntriesApplied.Load()
	win := startCPUWindow(nil)
	measuring.Store(true)
	start := time.Now()
	tick := time.NewTicker(time.Second)
	end := time.NewTimer(o.Duration)
	last, lastAt := applied0, start
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-end.C:
			break loop
		case now := <-tick.C:
			if o.Progress != nil {
				a := m.EntriesApplied.Load()
				o.Progress(Progress{System: "engine", Phase: PhaseMeasure, Elapsed: now.Sub(start), Total: o.Duration,
					Done: int64(a - applied0), Rate: float64(a-last) / now.Sub(lastAt).Seconds()})
				last, lastAt = a, now
			}
		}
	}
	tick.Stop()
	end.Stop()
	stopped.Store(true)
	res.Elapsed = time.Since(start)
	res.CPU = win.end()
	syncs, groups, entries, nanos := m.Syncs.Load()-syncs0, m.SyncGroups.Load()-groups0, m.SyncEntries.Load()-entries0, m.SyncNanos.Load()-nanos0
	cancel()
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res.Proposals, res.Failed = ok.Load(), failed.Load()
	res.Syncs = syncs
	if syncs > 0 {
		res.GroupsPerSync = float64(groups) / float64(syncs)
		res.EntriesPerSync = float64(entries) / float64(syncs)
		res.SyncMean = time.Duration(nanos / syncs)
	}
	return res, nil
}

// nopTransport is the transport of a node whose groups have one replica:
// there is nobody to talk to.
type nopTransport struct{}

func (nopTransport) Send([]multiraft.Message)                   {}
func (nopTransport) SendSnapshot(s *multiraft.OutgoingSnapshot) { s.Close() }

type quietPebble struct{}

func (quietPebble) Infof(string, ...any)  {}
func (quietPebble) Errorf(string, ...any) {}
func (quietPebble) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

// engineKV is the engine benchmark's state machine: a command is an 8-byte
// key and a value; it is stored under the user key group (8 bytes, big
// endian) + key, inside the group's own slice of the key space.
type engineKV struct{ group multiraft.GroupID }

func (kv engineKV) prefix() []byte { return binary.BigEndian.AppendUint64(nil, uint64(kv.group)) }

func (kv engineKV) span() (lo, hi []byte) {
	return keys.UserSpan(kv.prefix(), binary.BigEndian.AppendUint64(nil, uint64(kv.group)+1))
}

// Apply stores the command's value; it returns nil.
func (kv engineKV) Apply(ac *multiraft.ApplyContext, e multiraft.Entry) any {
	if len(e.Cmd) < 8 {
		panic(fmt.Sprintf("bench: group %d: command of %d bytes at index %d, want at least 8", kv.group, len(e.Cmd), e.Index))
	}
	if err := ac.Batch.Set(keys.MVCCKey(append(kv.prefix(), e.Cmd[:8]...), 0), e.Cmd[8:], nil); err != nil {
		panic(err)
	}
	return nil
}

func (engineKV) ApplyMembership(*multiraft.ApplyContext, uint64, multiraft.Membership) {}

// Snapshot writes every pair of the group as uvarint lengths and bytes.
func (kv engineKV) Snapshot(r pebble.Reader, w io.Writer) error {
	lo, hi := kv.span()
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	defer it.Close()
	bw := bufio.NewWriter(w)
	var hdr []byte
	for it.First(); it.Valid(); it.Next() {
		hdr = binary.AppendUvarint(binary.AppendUvarint(hdr[:0], uint64(len(it.Key()))), uint64(len(it.Value())))
		for _, b := range [][]byte{hdr, it.Key(), it.Value()} {
			if _, err := bw.Write(b); err != nil {
				return err
			}
		}
	}
	if err := it.Error(); err != nil {
		return err
	}
	return bw.Flush()
}

// errCorruptImage is Restore's answer to a malformed snapshot.
var errCorruptImage = errors.New("bench: corrupt engine snapshot")

// Restore replaces the group's pairs with the image's.
func (kv engineKV) Restore(b *pebble.Batch, r io.Reader) error {
	lo, hi := kv.span()
	if err := b.DeleteRange(lo, hi, nil); err != nil {
		return err
	}
	br := bufio.NewReader(r)
	for {
		kl, err := binary.ReadUvarint(br)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return errCorruptImage
		}
		vl, err := binary.ReadUvarint(br)
		if err != nil || kl > 1<<20 || vl > 1<<30 {
			return errCorruptImage
		}
		buf := make([]byte, kl+vl)
		if _, err := io.ReadFull(br, buf); err != nil {
			return errCorruptImage
		}
		if err := b.Set(buf[:kl], buf[kl:], nil); err != nil {
			return err
		}
	}
}

// Destroy deletes the group's pairs.
func (kv engineKV) Destroy(b *pebble.Batch) {
	lo, hi := kv.span()
	if err := b.DeleteRange(lo, hi, nil); err != nil {
		panic(err)
	}
}

// EngineRecord is the JSON form of an EngineResult.
type EngineRecord struct {
	Groups          int     `json:"groups"`
	Proposers       int     `json:"proposers"`
	ValueSize       int     `json:"value_size"`
	DurationS       float64 `json:"duration_s"`
	ProposalsPerSec float64 `json:"proposals_per_sec"`
	Proposals       int64   `json:"proposals"`
	Failed          int64   `json:"failed"`
	P50Ms           float64 `json:"p50_ms"`
	P99Ms           float64 `json:"p99_ms"`
	Syncs           uint64  `json:"syncs"`
	GroupsPerSync   float64 `json:"groups_per_sync"`
	EntriesPerSync  float64 `json:"entries_per_sync"`
	SyncMeanMs      float64 `json:"sync_mean_ms"`
	CPUUsPerOp      float64 `json:"cpu_us_per_proposal"`
	OtherCPUCores   float64 `json:"other_cpu_cores"`
	FsyncP50Ms      float64 `json:"fsync_p50_ms"`
	FsyncP99Ms      float64 `json:"fsync_p99_ms"`
}

// Record returns the JSON form of r.
func (r *EngineResult) Record() EngineRecord {
	p := Summarize(r.Latency)
	rec := EngineRecord{
		Groups: r.Options.Groups, Proposers: r.Options.Proposers, ValueSize: r.Options.ValueBytes,
		DurationS: r.Elapsed.Seconds(), ProposalsPerSec: r.ProposalsPerSec(), Proposals: r.Proposals, Failed: r.Failed,
		P50Ms: Millis(p.P50), P99Ms: Millis(p.P99), Syncs: r.Syncs, GroupsPerSync: r.GroupsPerSync,
		EntriesPerSync: r.EntriesPerSync, SyncMeanMs: Millis(r.SyncMean),
		FsyncP50Ms: Millis(r.Fsync.P50), FsyncP99Ms: Millis(r.Fsync.P99),
	}
	if r.Proposals > 0 {
		rec.CPUUsPerOp = float64(r.CPU.Client) / float64(time.Microsecond) / float64(r.Proposals)
	}
	if r.CPU.Wall > 0 {
		rec.OtherCPUCores = r.CPU.Others.Seconds() / r.CPU.Wall.Seconds()
	}
	return rec
}

// WriteTable writes r for people.
func (r *EngineResult) WriteTable(w io.Writer) {
	rec := r.Record()
	fmt.Fprintf(w, "proposals/s        %.0f  (%d in %.1fs, %d failed)\n", rec.ProposalsPerSec, rec.Proposals, rec.DurationS, rec.Failed)
	fmt.Fprintf(w, "proposal latency   p50 %.2f ms, p99 %.2f ms\n", rec.P50Ms, rec.P99Ms)
	fmt.Fprintf(w, "group commit       %d syncs: %.1f groups and %.1f entries per sync, %.2f ms per sync\n",
		rec.Syncs, rec.GroupsPerSync, rec.EntriesPerSync, rec.SyncMeanMs)
	fmt.Fprintf(w, "CPU                %.1f µs per proposal (this process); other load %.2f cores\n", rec.CPUUsPerOp, rec.OtherCPUCores)
	fmt.Fprintf(w, "disk fsync         p50 %.2f ms, p99 %.2f ms (4 KiB write+fsync, %d samples)\n", rec.FsyncP50Ms, rec.FsyncP99Ms, r.Fsync.Samples)
}
