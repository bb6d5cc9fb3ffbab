package bench

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/flotilla-kv/flotilla/internal/buildinfo"
	"github.com/flotilla-kv/flotilla/internal/launch"
	"github.com/flotilla-kv/flotilla/router"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// The systems a comparison can run.
const (
	SystemFlotilla = "flotilla"
	SystemEtcd     = "etcd"
)

// CompareOptions configures Compare. Fields documented as defaulted take
// their default when zero.
type CompareOptions struct {
	// Workloads are the workloads to run, each a full Config; they run in
	// order. Required.
	Workloads []Config
	// Systems are the systems to run, in order (SystemFlotilla,
	// SystemEtcd). Default both. Ratios in the table are the first
	// system's figures over each other's.
	Systems []string
	// Runs is how many times each workload runs against each system, on a
	// fresh fleet each time, alternating systems so slow drifts of the
	// machine's load hit both alike. The table shows medians. Default 1.
	Runs int
	// Conns is how many clients (router.Client, clientv3.Client) each
	// system's driver spreads the bench clients over. Default 1.
	Conns int
	// RouterBatches is router.Config.BatchesPerNode of the Flotilla
	// driver's routers: coalesced calls in flight per node; 0 the router's
	// default, negative no coalescing (every request its own RPC).
	RouterBatches int
	// Dir holds the fleets' data and logs; empty: a temporary directory,
	// removed at the end unless Keep.
	Dir  string
	Keep bool
	// BinDir holds shardnode and placementd; empty: next to the running
	// executable, then $PATH.
	BinDir string
	// Shards is the number of shards of the Flotilla fleet. Default 16.
	Shards int
	// BalanceWait bounds the wait, once every shard has a leader, for
	// placement to balance the leaders over the nodes (so that it does
	// not move them during the measurement). Zero: no wait.
	BalanceWait time.Duration
	// Etcd says where the etcd server comes from.
	Etcd EtcdBuild
	// EtcdTarget says which members the etcd driver talks to:
	// EtcdTargetLeader, EtcdTargetAll, or EtcdTargetAuto (default: the
	// leader for workloads that write, every member otherwise).
	EtcdTarget string
	// ProfileDir, when set, receives a CPU profile of every shardnode over
	// each Flotilla run's measured window (the nodes run with --pprof):
	// WORKLOAD-RUN-shardnode-N.cpu.pprof; and one of the bench's own
	// process, the clients and their routers, over the same window:
	// WORKLOAD-RUN-client.cpu.pprof.
	ProfileDir string
	// FsyncSamples is the size of the fsync probe. Default 200.
	FsyncSamples int
	// Log receives one line per step (fleet started, run done).
	Log io.Writer
	// Progress, when set, receives each run's progress with a label such
	// as "flotilla write 2/3".
	Progress func(label string, p Progress)
	// Endpoints, when set, are the addresses of an already running fleet
	// of the one system in Systems, as etcd's benchmark tool and go-ycsb
	// take them: placement addresses for Flotilla, client endpoints for
	// etcd (plaintext gRPC, no TLS). Compare then starts no fleet and
	// builds no etcd: every run drives that fleet (so runs after the first
	// find the keys of those before), and no server CPU or server stages
	// are measured, the servers not being its processes.
	Endpoints []string
}

// Compare runs every workload against every system and returns the
// report. Each run gets a fresh fleet (3 shardnodes and placementd, or 3
// etcd members) on loopback, killed after the run.
func Compare(ctx context.Context, o CompareOptions) (rep *Report, err error) {
	if o.Runs == 0 {
		o.Runs = 1
	}
	if o.Conns == 0 {
		o.Conns = 1
	}
	if len(o.Systems) == 0 {
		o.Systems = []string{SystemFlotilla, SystemEtcd}
	}
	if o.FsyncSamples == 0 {
		o.FsyncSamples = 200
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if len(o.Workloads) == 0 {
		return nil, errors.New("bench: no workload to run")
	}
	if _, err := ResolveEtcdTarget(o.EtcdTarget, Config{}); err != nil {
		return nil, err
	}
	if len(o.Endpoints) > 0 && len(o.Systems) != 1 {
		return nil, fmt.Errorf("bench: endpoints %s are of one running fleet: name its system alone, not %s",
			strings.Join(o.Endpoints, ","), strings.Join(o.Systems, ","))
	}
	rep = &Report{Systems: o.Systems, Runs: map[string]map[string][]*Result{}, Configs: map[string]Config{}, Started: time.Now(),
		Build: buildinfo.Read(), Endpoints: o.Endpoints}
	for _, w := range o.Workloads {
		if err := w.Validate(); err != nil {
			return nil, err
		}
		w = w.withDefaults()
		if _, dup := rep.Configs[w.Workload]; dup {
			return nil, fmt.Errorf("bench: workload %q given twice", w.Workload)
		}
		rep.Workloads = append(rep.Workloads, w.Workload)
		rep.Configs[w.Workload] = w
		rep.Runs[w.Workload] = map[string][]*Result{}
	}

	var etcdBin string
	for _, s := range o.Systems {
		switch {
		case s != SystemFlotilla && s != SystemEtcd:
			return nil, fmt.Errorf("bench: unknown system %q", s)
		case len(o.Endpoints) > 0 && s == SystemEtcd:
			if rep.EtcdVersion, err = etcdServerVersion(ctx, o.Endpoints); err != nil {
				return nil, err
			}
		case len(o.Endpoints) > 0:
		case s == SystemFlotilla:
			if err := findBinary(o.BinDir, "shardnode"); err != nil {
				return nil, err
			}
		case s == SystemEtcd:
			if etcdBin, rep.EtcdVersion, err = EnsureEtcd(ctx, o.Etcd); err != nil {
				return nil, err
			}
		}
	}

	dir := o.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "flotilla-bench-")
		if err != nil {
			return nil, err
		}
		dir = d
		if !o.Keep {
			// Kept after a failure, for its logs.
			defer func() {
				if rep != nil {
					_ = os.RemoveAll(dir)
				}
			}()
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if rep.Fsync, err = ProbeFsync(dir, o.FsyncSamples); err != nil {
		return nil, fmt.Errorf("bench: fsync probe in %s: %w", dir, err)
	}
	fmt.Fprintf(o.Log, "fsync probe in %s: p50 %.2f ms, p99 %.2f ms\n", dir, Millis(rep.Fsync.P50), Millis(rep.Fsync.P99))

	for _, w := range o.Workloads {
		w = w.withDefaults()
		for run := 1; run <= o.Runs; run++ {
			for _, s := range o.Systems {
				label := fmt.Sprintf("%s %s %d/%d", s, w.Workload, run, o.Runs)
				runDir := filepath.Join(dir, fmt.Sprintf("%s-%s-%d", w.Workload, s, run))
				if err := os.MkdirAll(runDir, 0o755); err != nil {
					return nil, err
				}
				res, note, err := runOnce(ctx, o, s, etcdBin, runDir, w, label)
				if note != "" {
					rep.Notes = append(rep.Notes, label+": "+note)
				}
				if err != nil {
					return nil, fmt.Errorf("%s: %w", label, err)
				}
				rep.Runs[w.Workload][s] = append(rep.Runs[w.Workload][s], res)
				p := Summarize(res.Latency)
				fmt.Fprintf(o.Log, "%s: %.0f ops/s, p50 %.2f ms, p99 %.2f ms, %d errors, server CPU %.1f µs/op\n", label,
					res.OpsPerSec(), Millis(p.P50), Millis(p.P99), res.Errors, float64(res.ServerCPUPerOp())/1e3)
				if x := res.Watch; x != nil {
					lag := Summarize(x.Lag)
					fmt.Fprintf(o.Log, "%s: watches: %.0f events/s, lag p50 %.2f ms, p99 %.2f ms, max %.2f ms, %d of %d acknowledged writes missing, %d duplicates, drain %s\n",
						label, res.EventsPerSec(), Millis(lag.P50), Millis(lag.P99), Millis(lag.Max), x.Missing, x.Acknowledged,
						x.Duplicates, x.Drain.Round(time.Millisecond))
				}
				if !o.Keep {
					_ = os.RemoveAll(runDir)
				}
			}
		}
	}
	return rep, nil
}

// runOnce starts a fresh fleet of system in dir, runs w against it and
// kills the fleet.
func runOnce(ctx context.Context, o CompareOptions, system, etcdBin, dir string, w Config, label string) (*Result, string, error) {
	var (
		drv       Driver
		servers   []Proc
		note      string
		onMeasure func(time.Duration)
		// The Flotilla nodes' metrics at the window's start, for the
		// server stages (see ServerStages).
		httpAddrs []string
		before    metricSums
		stagesErr error
		// The routers' requests and RPCs at the window's start.
		routers          []*router.Client
		requests0, rpcs0 uint64
		scraped          = make(chan struct{})
		etcd             *EtcdDriver
		// The transaction workloads' shards: Flotilla's, or for etcd as
		// many even ranges as Flotilla has shards.
		bounds [][]byte
	)
	began := time.Now()
	if len(o.Endpoints) > 0 {
		return runOnEndpoints(ctx, o, system, w, label)
	}
	switch system {
	case SystemFlotilla:
		shards := o.Shards
		if shards == 0 {
			shards = 16
		}
		var nodeArgs []string
		if o.ProfileDir != "" {
			nodeArgs = []string{"--pprof"}
		}
		f, err := startFlotilla(ctx, dir, o.BinDir, shards, nodeArgs...)
		if err != nil {
			return nil, "", err
		}
		defer f.Close()
		if note, err = waitLeaders(ctx, f, shards, o.BalanceWait); err != nil {
			return nil, "", err
		}
		if _, ok := txnShapes[w.Workload]; ok {
			if bounds, err = flotillaBoundaries(ctx, f); err != nil {
				return nil, note, err
			}
		}
		d, err := NewFlotillaDriver(ctx, f.PlacementAddrs(), o.Conns, w.Clients, o.RouterBatches)
		if err != nil {
			return nil, note, err
		}
		defer d.Close()
		drv, servers, routers = d, procs(f), d.Routers()
		for _, n := range f.Nodes() {
			httpAddrs = append(httpAddrs, n.HTTP)
		}
		onMeasure = func(window time.Duration) {
			requests0, rpcs0 = routerCalls(routers)
			before, stagesErr = scrapeStages(ctx, httpAddrs)
			close(scraped)
			if o.ProfileDir != "" {
				prefix := filepath.Join(o.ProfileDir, strings.ReplaceAll(strings.TrimPrefix(label, "flotilla "), "/", "of"))
				var clientProfiled sync.WaitGroup
				clientProfiled.Go(func() { profileSelf(ctx, window, prefix, o.Log) })
				profileNodes(ctx, f, window, prefix, o.Log)
				clientProfiled.Wait()
			}
		}
	case SystemEtcd:
		c, err := StartEtcd(ctx, etcdBin, dir, 3)
		if err != nil {
			return nil, "", err
		}
		defer c.Stop()
		target, err := ResolveEtcdTarget(o.EtcdTarget, w)
		if err != nil {
			return nil, "", err
		}
		d, err := NewEtcdDriver(ctx, c.Endpoints, o.Conns, target)
		if err != nil {
			return nil, "", err
		}
		defer d.Close()
		drv, servers = d, c.Procs()
		etcd = d
		bounds = EvenBoundaries(cmp.Or(o.Shards, DefaultTxnShards))
	}
	fmt.Fprintf(o.Log, "%s: fleet ready in %s (%s)\n", label, time.Since(began).Round(time.Millisecond), procNames(servers))
	var progress func(Progress)
	if o.Progress != nil {
		progress = func(p Progress) { o.Progress(label, p) }
	}
	res, err := Run(ctx, w, drv, RunOptions{Servers: servers, Progress: progress, OnMeasure: onMeasure, ShardBoundaries: bounds})
	if err == nil && etcd != nil {
		res.EtcdTarget, res.EtcdLeaderChanges = etcd.Target(), etcd.LeaderChanges()
	}
	if err == nil && len(res.CPU.Errors) > 0 {
		err = fmt.Errorf("server processes died during the run: %s (logs in %s)", strings.Join(res.CPU.Errors, ", "), dir)
	}
	if err == nil && len(httpAddrs) > 0 {
		// The stages are a by-product of the run: a failed scrape is
		// logged, not returned.
		<-scraped
		requests, rpcs := routerCalls(routers)
		after, aerr := scrapeStages(ctx, httpAddrs)
		if stagesErr == nil {
			stagesErr = aerr
		}
		if stagesErr != nil {
			fmt.Fprintf(o.Log, "%s: server stages: %v\n", label, stagesErr)
		} else {
			res.Stages = stagesBetween(before, after)
			if rpcs > rpcs0 {
				res.Stages.RequestsPerRPC = float64(requests-requests0) / float64(rpcs-rpcs0)
			}
		}
	}
	return res, note, err
}

// routerCalls adds up the requests the routers sent to nodes and the RPCs
// that carried them (router.Stats).
func routerCalls(routers []*router.Client) (requests, rpcs uint64) {
	for _, r := range routers {
		st := r.Stats()
		requests += st.Requests
		rpcs += st.RPCs
	}
	return requests, rpcs
}

// runOnEndpoints runs w against the running fleet of system at
// o.Endpoints.
func runOnEndpoints(ctx context.Context, o CompareOptions, system string, w Config, label string) (*Result, string, error) {
	var (
		drv    Driver
		etcd   *EtcdDriver
		bounds [][]byte
	)
	switch system {
	case SystemFlotilla:
		if _, ok := txnShapes[w.Workload]; ok {
			var err error
			if bounds, err = placementBoundaries(ctx, o.Endpoints); err != nil {
				return nil, "", err
			}
		}
		d, err := NewFlotillaDriver(ctx, o.Endpoints, o.Conns, w.Clients, o.RouterBatches)
		if err != nil {
			return nil, "", err
		}
		defer d.Close()
		drv = d
	case SystemEtcd:
		target, err := ResolveEtcdTarget(o.EtcdTarget, w)
		if err != nil {
			return nil, "", err
		}
		d, err := NewEtcdDriver(ctx, o.Endpoints, o.Conns, target)
		if err != nil {
			return nil, "", err
		}
		defer d.Close()
		drv, etcd = d, d
		bounds = EvenBoundaries(cmp.Or(o.Shards, DefaultTxnShards))
	}
	fmt.Fprintf(o.Log, "%s: the running fleet at %s\n", label, strings.Join(o.Endpoints, ","))
	var progress func(Progress)
	if o.Progress != nil {
		progress = func(p Progress) { o.Progress(label, p) }
	}
	res, err := Run(ctx, w, drv, RunOptions{Progress: progress, ShardBoundaries: bounds})
	if err == nil && etcd != nil {
		res.EtcdTarget, res.EtcdLeaderChanges = etcd.Target(), etcd.LeaderChanges()
	}
	return res, "", err
}

// placementBoundaries returns the start keys of a running Flotilla fleet's
// shards but the first, in key order, from the first of the placement
// addresses that answers.
func placementBoundaries(ctx context.Context, placement []string) ([][]byte, error) {
	var errs []error
	for _, addr := range placement {
		b, err := func() ([][]byte, error) {
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				return nil, err
			}
			defer conn.Close()
			resp, err := pb.NewPlacementClient(conn).ListShards(ctx, &pb.ListShardsRequest{})
			if err != nil {
				return nil, err
			}
			var b [][]byte
			for _, s := range resp.GetShards() {
				if start := s.GetRoute().GetShard().GetStart(); len(start) > 0 {
					b = append(b, start)
				}
			}
			slices.SortFunc(b, bytes.Compare)
			return b, nil
		}()
		if err == nil {
			return b, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
	}
	return nil, fmt.Errorf("bench: listing the shards: %w", errors.Join(errs...))
}

// etcdServerVersion returns the server version of the etcd members at
// endpoints, as the first that answers the maintenance Status API says.
func etcdServerVersion(ctx context.Context, endpoints []string) (string, error) {
	c, err := newEtcdClient(ctx, endpoints)
	if err != nil {
		return "", err
	}
	defer c.Close()
	var errs []error
	for _, ep := range endpoints {
		resp, err := c.Status(ctx, ep)
		if err == nil {
			return resp.Version, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", ep, err))
	}
	return "", fmt.Errorf("bench: asking etcd its version: %w", errors.Join(errs...))
}

func procNames(ps []Proc) string {
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = fmt.Sprintf("%s pid %d", p.Name, p.PID)
	}
	return strings.Join(names, ", ")
}

// profileNodes saves a CPU profile of every shardnode of f, taken over the
// measured window less a second (so it ends before the fleet is killed),
// as PREFIX-shardnode-N.cpu.pprof. Failures are logged, not returned: a
// profile is a by-product of the run.
func profileNodes(ctx context.Context, f *launch.Fleet, window time.Duration, prefix string, log io.Writer) {
	secs := int(window.Seconds()) - 1
	if secs < 1 {
		fmt.Fprintf(log, "profile: window %s too short to profile\n", window)
		return
	}
	if err := os.MkdirAll(filepath.Dir(prefix), 0o755); err != nil {
		fmt.Fprintf(log, "profile: %v\n", err)
		return
	}
	var wg sync.WaitGroup
	for _, n := range f.Nodes() {
		wg.Go(func() {
			path := fmt.Sprintf("%s-shardnode-%d.cpu.pprof", strings.ReplaceAll(prefix, " ", "-"), n.ID)
			url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", n.HTTP, secs)
			if err := fetchTo(ctx, url, path); err != nil {
				fmt.Fprintf(log, "profile of shardnode %d: %v\n", n.ID, err)
				return
			}
			fmt.Fprintf(log, "profile: %s\n", path)
		})
	}
	wg.Wait()
}

// profileSelf saves a CPU profile of this process (the bench's clients
// and routers), over the window profileNodes profiles, as
// PREFIX-client.cpu.pprof. Failures are logged, as profileNodes's are.
func profileSelf(ctx context.Context, window time.Duration, prefix string, log io.Writer) {
	secs := int(window.Seconds()) - 1
	if secs < 1 {
		return // profileNodes says why
	}
	path := strings.ReplaceAll(prefix, " ", "-") + "-client.cpu.pprof"
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		fmt.Fprintf(log, "profile: %v\n", err)
		return
	}
	out, err := os.Create(path)
	if err != nil {
		fmt.Fprintf(log, "profile: %v\n", err)
		return
	}
	defer out.Close()
	if err := pprof.StartCPUProfile(out); err != nil {
		fmt.Fprintf(log, "profile of the clients: %v\n", err)
		return
	}
	select {
	case <-ctx.Done():
	case <-time.After(time.Duration(secs) * time.Second):
	}
	pprof.StopCPUProfile()
	fmt.Fprintf(log, "profile: %s\n", path)
}

// fetchTo saves the body of GET url to path.
func fetchTo(ctx context.Context, url, path string) error {
	body, err := launch.Get(ctx, url)
	if err != nil {
		return err
	}
	defer body.Close()
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, body); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
