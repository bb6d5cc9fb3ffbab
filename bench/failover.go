package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"time"

	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// FailoverOptions configures RunFailover. A zero field takes its default.
type FailoverOptions struct {
	// Dir holds the fleet's data and logs. Required.
	Dir    string
	BinDir string
	// Shards is the number of shards placement creates. Default 32.
	Shards int
	// WritersPerShard is the number of clients writing to each shard in
	// a closed loop; a shard's writers write only its keys, so a stalled
	// shard never starves another's. Default 2.
	WritersPerShard int
	// ValueBytes is the size of each written value. Default 256.
	ValueBytes int
	// KillAfter is when, into the load, the node leading the most shards
	// is killed with SIGKILL. Default 5 s.
	KillAfter time.Duration
	// After is how long the load goes on after the kill. Default 15 s.
	After time.Duration
	// Timeout bounds each write, the router's retries included.
	// Default 10 s.
	Timeout time.Duration
	// Log receives one line per step.
	Log io.Writer
}

// ShardOutage is what one shard saw after the kill.
type ShardOutage struct {
	Shard uint64 `json:"shard"`
	// Affected: its leader was on the killed node.
	Affected bool `json:"affected"`
	// UnavailableMs is the time from the kill to the completion of the
	// first successful write started after it; -1 if none succeeded.
	UnavailableMs float64 `json:"unavailable_ms"`
	// Errors counts the writes that failed after the kill; Writes those
	// that succeeded.
	Errors int64 `json:"errors"`
	Writes int64 `json:"writes"`
	// MaxLatencyMs is the longest successful write completed after the
	// kill.
	MaxLatencyMs float64 `json:"max_latency_ms"`
}

// FailoverResult is what RunFailover measured.
type FailoverResult struct {
	Shards        int           `json:"shards"`
	KilledNode    uint64        `json:"killed_node"`
	KilledLeaders int           `json:"killed_leaders"`
	Outages       []ShardOutage `json:"outages"`
	// AffectedMaxMs and AffectedP99Ms summarise the affected shards'
	// unavailability (-1 when one never recovered).
	AffectedMaxMs float64 `json:"affected_unavailable_max_ms"`
	AffectedP99Ms float64 `json:"affected_unavailable_p99_ms"`
	// UnaffectedErrors counts the failed writes of the other shards after
	// the kill.
	UnaffectedErrors int64            `json:"unaffected_errors"`
	UnaffectedMaxMs  float64          `json:"unaffected_max_latency_ms"`
	ErrorsByKind     map[string]int64 `json:"errors_by_kind,omitempty"`
	// ServerCPUCores is the CPU of the fleet's surviving processes (the
	// other shardnodes and placementd) from the kill to the end, in
	// cores; OtherCPUCores is that of every other process on the
	// machine, the bench's own excluded.
	ServerCPUCores float64 `json:"server_cpu_cores"`
	OtherCPUCores  float64 `json:"other_cpu_cores"`
}

// shardWriter is the state of one shard during the failover run.
type shardWriter struct {
	id         uint64
	start, end []byte
	mu         sync.Mutex
	firstOK    time.Time // completion of the first success started after the kill
	errs, ok   int64
	maxLat     time.Duration
}

// RunFailover starts a fleet with placement, writes steadily to every
// shard, kills (SIGKILL) the node leading the most shards after
// o.KillAfter, keeps writing for o.After, and reports per shard how long
// writes were unavailable and whether shards whose leader survived saw
// errors.
func RunFailover(ctx context.Context, o FailoverOptions) (*FailoverResult, error) {
	if o.Shards == 0 {
		o.Shards = 32
	}
	if o.WritersPerShard == 0 {
		o.WritersPerShard = 2
	}
	if o.ValueBytes == 0 {
		o.ValueBytes = 256
	}
	if o.KillAfter == 0 {
		o.KillAfter = 5 * time.Second
	}
	if o.After == 0 {
		o.After = 15 * time.Second
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Dir == "" || o.Shards < 1 || o.WritersPerShard < 1 || o.ValueBytes < 0 || o.KillAfter < 0 || o.After <= 0 || o.Timeout <= 0 {
		return nil, fmt.Errorf("%w: failover options %+v", ErrInvalidConfig, o)
	}
	f, err := startFlotilla(ctx, o.Dir, o.BinDir, o.Shards)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	note, err := waitLeaders(ctx, f, o.Shards, 30*time.Second)
	if err != nil {
		return nil, err
	}
	if note != "" {
		fmt.Fprintln(o.Log, note)
	}
	conn, err := f.Placements()[0].Conn()
	if err != nil {
		return nil, err
	}
	list, err := pb.NewPlacementClient(conn).ListShards(ctx, &pb.ListShardsRequest{})
	if err != nil {
		return nil, err
	}
	var shards []*shardWriter
	for _, s := range list.GetShards() {
		d := s.GetRoute().GetShard()
		shards = append(shards, &shardWriter{id: d.GetShardId(), start: d.GetStart(), end: d.GetEnd()})
	}
	drv, err := NewFlotillaDriver(ctx, f.PlacementAddrs(), 4, len(shards)*o.WritersPerShard, 0)
	if err != nil {
		return nil, err
	}
	defer drv.Close()

	var (
		killMu sync.RWMutex
		killAt time.Time
		kindMu sync.Mutex
		kinds  = map[string]int64{}
	)
	lctx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	for si, s := range shards {
		for w := range o.WritersPerShard {
			wg.Go(func() {
				kv := drv.Client(si*o.WritersPerShard + w)
				rng := rand.New(rand.NewPCG(uint64(si), uint64(w)))
				value := make([]byte, o.ValueBytes)
				for lctx.Err() == nil {
					key := shardKey(rng, s.start, s.end)
					t0 := time.Now()
					octx, cancel := context.WithTimeout(lctx, o.Timeout)
					err := kv.Put(octx, key, value)
					cancel()
					done := time.Now()
					killMu.RLock()
					k := killAt
					killMu.RUnlock()
					if lctx.Err() != nil || k.IsZero() {
						continue // completed before the kill, or cut short by the end
					}
					s.mu.Lock()
					if err != nil {
						s.errs++
					} else {
						s.ok++
						s.maxLat = max(s.maxLat, done.Sub(t0))
						if t0.After(k) && (s.firstOK.IsZero() || done.Before(s.firstOK)) {
							s.firstOK = done
						}
					}
					s.mu.Unlock()
					if err != nil {
						kindMu.Lock()
						kind := drv.ErrorKind(err)
						if kinds[kind] == 0 {
							fmt.Fprintf(o.Log, "first error of kind %s (shard %d): %v\n", kind, s.id, err)
						}
						kinds[kind]++
						kindMu.Unlock()
					}
				}
			})
		}
	}

	sleepCtx := func(d time.Duration) error {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return nil
		}
	}
	if err := sleepCtx(o.KillAfter); err != nil {
		stop()
		wg.Wait()
		return nil, err
	}
	// Who leads what, asked of the nodes themselves, right before the kill.
	leadersOf := map[uint64][]uint64{}
	for _, n := range f.Nodes() {
		a, err := admin(f, n.ID)
		if err != nil {
			return nil, err
		}
		info, err := a.GetNodeInfo(ctx, &pb.NodeInfoRequest{})
		if err != nil {
			return nil, fmt.Errorf("bench: node %d info: %w", n.ID, err)
		}
		for _, si := range info.GetShardInfos() {
			if si.GetIsLeader() {
				leadersOf[n.ID] = append(leadersOf[n.ID], si.GetShard().GetShardId())
			}
		}
	}
	victim := f.Node(1)
	for _, n := range f.Nodes() {
		if len(leadersOf[n.ID]) > len(leadersOf[victim.ID]) {
			victim = n
		}
	}
	affected := map[uint64]bool{}
	for _, id := range leadersOf[victim.ID] {
		affected[id] = true
	}
	// The window measures the nodes that live on and placementd, so that
	// the other load is the rest of the machine, not the fleet serving
	// the writes (the killed node's CPU in the window is nil: it dies at
	// once).
	var survivors []Proc
	for _, p := range procs(f) {
		if p.Name != victim.Name {
			survivors = append(survivors, p)
		}
	}
	win := startCPUWindow(survivors)
	killMu.Lock()
	killAt = time.Now()
	_ = victim.Kill(context.Background()) // no deadline: SIGKILL cannot be refused
	killMu.Unlock()
	fmt.Fprintf(o.Log, "killed node %d (SIGKILL), leader of %d of %d shards\n", victim.ID, len(affected), len(shards))
	err = sleepCtx(o.After)
	stop()
	wg.Wait()
	if err != nil {
		return nil, err
	}
	cpu := win.end()

	res := &FailoverResult{Shards: len(shards), KilledNode: victim.ID, KilledLeaders: len(affected), ErrorsByKind: kinds,
		ServerCPUCores: cpu.Server.Seconds() / cpu.Wall.Seconds(), OtherCPUCores: cpu.Others.Seconds() / cpu.Wall.Seconds()}
	var windows []float64
	for _, s := range shards {
		out := ShardOutage{Shard: s.id, Affected: affected[s.id], UnavailableMs: -1, Errors: s.errs, Writes: s.ok, MaxLatencyMs: Millis(s.maxLat)}
		if !s.firstOK.IsZero() {
			out.UnavailableMs = Millis(s.firstOK.Sub(killAt))
		}
		res.Outages = append(res.Outages, out)
		if out.Affected {
			w := out.UnavailableMs
			if w < 0 {
				w = 1e18 // never recovered: sorts last
			}
			windows = append(windows, w)
		} else {
			res.UnaffectedErrors += s.errs
			res.UnaffectedMaxMs = max(res.UnaffectedMaxMs, out.MaxLatencyMs)
		}
	}
	sort.Slice(res.Outages, func(i, j int) bool { return res.Outages[i].Shard < res.Outages[j].Shard })
	if len(windows) > 0 {
		slices.Sort(windows)
		never := func(v float64) float64 {
			if v >= 1e18 {
				return -1
			}
			return v
		}
		res.AffectedMaxMs = never(windows[len(windows)-1])
		i := max(0, min(len(windows)-1, int(0.99*float64(len(windows))+0.5)-1))
		res.AffectedP99Ms = never(windows[i])
	}
	return res, nil
}

// WriteTable writes r for people.
func (r *FailoverResult) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "killed node %d with SIGKILL; it led %d of %d shards\n", r.KilledNode, r.KilledLeaders, r.Shards)
	fmt.Fprintf(w, "  %-6s %-9s %16s %8s %8s %15s\n", "SHARD", "AFFECTED", "UNAVAILABLE ms", "WRITES", "ERRORS", "MAX LATENCY ms")
	for _, o := range r.Outages {
		un := fmt.Sprintf("%.0f", o.UnavailableMs)
		if o.UnavailableMs < 0 {
			un = "never recovered"
		}
		fmt.Fprintf(w, "  %-6d %-9t %16s %8d %8d %15.1f\n", o.Shard, o.Affected, un, o.Writes, o.Errors, o.MaxLatencyMs)
	}
	fmt.Fprintf(w, "affected shards: writes unavailable for max %.0f ms, p99 %.0f ms (-1: a shard never recovered)\n", r.AffectedMaxMs, r.AffectedP99Ms)
	fmt.Fprintf(w, "unaffected shards: %d errors, max write latency %.1f ms\n", r.UnaffectedErrors, r.UnaffectedMaxMs)
	if len(r.ErrorsByKind) > 0 {
		fmt.Fprintf(w, "errors after the kill by kind: %s\n", formatCounts(r.ErrorsByKind))
	}
	fmt.Fprintf(w, "after the kill: the surviving servers used %.2f cores, the rest of the machine (other load) %.2f\n", r.ServerCPUCores, r.OtherCPUCores)
}

// shardKey returns a random key of [start, end): start (or a zero byte
// for the first shard, whose start is empty) followed by 4 random bytes,
// which sorts below end whenever end is longer than start's prefix.
func shardKey(rng *rand.Rand, start, end []byte) []byte {
	key := append([]byte{}, start...)
	if len(key) == 0 {
		key = append(key, 0)
	}
	key = binary.BigEndian.AppendUint32(key, rng.Uint32())
	if len(end) > 0 && bytes.Compare(key, end) >= 0 {
		panic(fmt.Sprintf("bench: shard [%x, %x) has no room for key %x", start, end, key))
	}
	return key
}
