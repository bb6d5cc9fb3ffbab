package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"time"

	"github.com/flotilla-kv/flotilla/internal/poll"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// IdleOptions configures RunIdle. A zero field takes its default.
type IdleOptions struct {
	// Dir holds the nodes' data and logs. Required.
	Dir    string
	BinDir string
	// Groups is the number of shards, each with a replica on every node.
	// Default 10,000; at most 65,536 (split points are 2-byte prefixes).
	Groups int
	// Measure is the window over which CPU is measured. Default 10 s.
	Measure time.Duration
	// Settle bounds the wait for every shard to have a leader and most
	// replicas to quiesce. Default 5 minutes.
	Settle time.Duration
	// ProfileDir, when set, receives a CPU profile of every shardnode over
	// the measured window (the nodes then run with --pprof), as
	// idle-shardnode-N.cpu.pprof.
	ProfileDir string
	// Log receives one line per step.
	Log io.Writer
}

// IdleNode is what one node used while idle.
type IdleNode struct {
	Node           uint64  `json:"node"`
	CPUPercentCore float64 `json:"cpu_percent_of_core"`
	RSSBytes       int64   `json:"rss_bytes"`
	Shards         uint32  `json:"shards"`
	Leaders        uint32  `json:"leaders"`
	Quiesced       uint64  `json:"quiesced"`
}

// IdleResult is what RunIdle measured.
type IdleResult struct {
	Groups         int        `json:"groups"`
	MeasureS       float64    `json:"measure_s"`
	SettleS        float64    `json:"settle_s"`
	CreateS        float64    `json:"create_s"`
	Nodes          []IdleNode `json:"nodes"`
	OtherCPUCores  float64    `json:"other_cpu_cores"`
	LoadAvgStart   float64    `json:"loadavg_start"`
	LoadAvgEnd     float64    `json:"loadavg_end"`
	SettledCleanly bool       `json:"settled"`
}

// idleShardDesc returns the descriptor of shard i (1-based) of n, its
// range bounded by 2-byte prefixes spread over the key space, with one
// replica (ID i*10+node) on each of nodes.
func idleShardDesc(i, n int, nodes []uint64) *pb.Descriptor {
	bound := func(j int) []byte { return binary.BigEndian.AppendUint16(nil, uint16(j*65536/n)) }
	d := &pb.Descriptor{ShardId: uint64(i), Epoch: &pb.Epoch{ConfVer: 1, Version: 1}}
	if i > 1 {
		d.Start = bound(i - 1)
	}
	if i < n {
		d.End = bound(i)
	}
	for _, node := range nodes {
		d.Replicas = append(d.Replicas, &pb.Replica{ReplicaId: uint64(i)*10 + node, NodeId: node})
	}
	return d
}

// RunIdle starts 3 shardnodes without placement, creates o.Groups shards
// with a replica on each through the Admin service, waits until each has
// a leader and the nodes' replicas quiesced, then measures, with no
// request in flight, each node's CPU over o.Measure and its resident
// memory.
func RunIdle(ctx context.Context, o IdleOptions) (*IdleResult, error) {
	if o.Groups == 0 {
		o.Groups = 10000
	}
	if o.Measure == 0 {
		o.Measure = 10 * time.Second
	}
	if o.Settle == 0 {
		o.Settle = 5 * time.Minute
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Dir == "" || o.Groups < 1 || o.Groups > 65536 || o.Measure < 0 || o.Settle < 0 {
		return nil, fmt.Errorf("%w: idle options %+v", ErrInvalidConfig, o)
	}
	var nodeArgs []string
	if o.ProfileDir != "" {
		nodeArgs = []string{"--pprof"}
	}
	f, err := startFlotilla(ctx, o.Dir, o.BinDir, 0 /* shards: no placement */, nodeArgs...)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	nodes := []uint64{1, 2, 3}
	admins := make([]pb.AdminClient, len(nodes))
	for i, id := range nodes {
		if admins[i], err = admin(f, id); err != nil {
			return nil, err
		}
	}
	res := &IdleResult{Groups: o.Groups, MeasureS: o.Measure.Seconds()}

	began := time.Now()
	const parallel = 64
	next := make(chan int)
	errs := make(chan error, parallel)
	var wg sync.WaitGroup
	for range parallel {
		wg.Go(func() {
			for i := range next {
				d := idleShardDesc(i, o.Groups, nodes)
				for _, a := range admins {
					cctx, cancel := context.WithTimeout(ctx, time.Minute)
					_, err := a.CreateReplica(cctx, &pb.CreateReplicaRequest{Shard: d})
					cancel()
					if err != nil {
						errs <- fmt.Errorf("bench: create shard %d: %w", i, err)
						return
					}
				}
			}
		})
	}
	var createErr error
feed:
	for i := 1; i <= o.Groups; i++ {
		select {
		case next <- i:
		case createErr = <-errs:
			break feed
		case <-ctx.Done():
			createErr = ctx.Err()
			break feed
		}
	}
	close(next)
	wg.Wait()
	if createErr == nil && len(errs) > 0 {
		createErr = <-errs
	}
	if createErr != nil {
		return nil, createErr
	}
	res.CreateS = time.Since(began).Seconds()
	fmt.Fprintf(o.Log, "created %d shards x 3 replicas in %.1fs\n", o.Groups, res.CreateS)

	// Settled: every shard has a leader and 99% of the replicas are
	// quiesced. GetNodeInfo asks every group its status, so poll slowly.
	began = time.Now()
	infos := make([]*pb.NodeInfo, len(nodes))
	err = poll.Until(ctx, o.Settle, 2*time.Second, func(ctx context.Context) error {
		var leaders, quiesced uint64
		for i, a := range admins {
			info, err := a.GetNodeInfo(ctx, &pb.NodeInfoRequest{})
			if err != nil {
				return err
			}
			infos[i] = info
			leaders += uint64(info.GetLeaders())
			quiesced += info.GetEngine().GetQuiescedGroups()
		}
		fmt.Fprintf(o.Log, "settling: %d of %d shards have a leader, %d of %d replicas quiesced\n", leaders, o.Groups, quiesced, 3*o.Groups)
		if leaders < uint64(o.Groups) || quiesced < uint64(3*o.Groups)*99/100 {
			return fmt.Errorf("%d of %d leaders, %d of %d replicas quiesced", leaders, o.Groups, quiesced, 3*o.Groups)
		}
		return nil
	})
	res.SettleS = time.Since(began).Seconds()
	res.SettledCleanly = err == nil
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		fmt.Fprintf(o.Log, "not settled after %s: %v; measuring anyway\n", o.Settle, err)
	}

	// The window: nothing asks the nodes anything (but the profiler,
	// when asked for).
	win := startCPUWindow(procs(f))
	var profiled sync.WaitGroup
	if o.ProfileDir != "" {
		profiled.Go(func() { profileNodes(ctx, f, o.Measure, filepath.Join(o.ProfileDir, "idle"), o.Log) })
	}
	t := time.NewTimer(o.Measure)
	select {
	case <-ctx.Done():
		t.Stop()
		profiled.Wait()
		return nil, ctx.Err()
	case <-t.C:
	}
	cpu := win.end()
	profiled.Wait()
	if len(cpu.Errors) > 0 {
		return nil, fmt.Errorf("bench: nodes died while idle: %v (logs in %s)", cpu.Errors, o.Dir)
	}
	res.OtherCPUCores = cpu.Others.Seconds() / cpu.Wall.Seconds()
	res.LoadAvgStart, res.LoadAvgEnd = cpu.LoadStart, cpu.LoadEnd
	for i, n := range f.Nodes() {
		st, err := ReadProcStat(n.PID())
		if err != nil {
			return nil, err
		}
		in := IdleNode{Node: n.ID, CPUPercentCore: 100 * cpu.Servers[n.Name].Seconds() / cpu.Wall.Seconds(), RSSBytes: st.RSSBytes}
		if infos[i] != nil {
			in.Shards, in.Leaders, in.Quiesced = infos[i].GetShards(), infos[i].GetLeaders(), infos[i].GetEngine().GetQuiescedGroups()
		}
		res.Nodes = append(res.Nodes, in)
	}
	return res, nil
}

// WriteTable writes r for people.
func (r *IdleResult) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "%d idle shards x 3 replicas (created in %.1fs, settled in %.1fs%s); CPU over %.0fs:\n",
		r.Groups, r.CreateS, r.SettleS, map[bool]string{true: "", false: ", NOT fully settled"}[r.SettledCleanly], r.MeasureS)
	fmt.Fprintf(w, "  %-5s %8s %10s %8s %8s %9s\n", "NODE", "CPU %", "RSS MiB", "SHARDS", "LEADERS", "QUIESCED")
	for _, n := range r.Nodes {
		fmt.Fprintf(w, "  %-5d %8.2f %10.1f %8d %8d %9d\n", n.Node, n.CPUPercentCore, float64(n.RSSBytes)/(1<<20), n.Shards, n.Leaders, n.Quiesced)
	}
	fmt.Fprintf(w, "CPU %% is of one core. Other load on the machine during the window: %.2f cores (load average %.1f -> %.1f)\n",
		r.OtherCPUCores, r.LoadAvgStart, r.LoadAvgEnd)
}
