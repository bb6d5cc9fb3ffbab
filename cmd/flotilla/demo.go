package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/flotilla-kv/flotilla/internal/cli"
	"github.com/flotilla-kv/flotilla/internal/ports"
	"github.com/flotilla-kv/flotilla/internal/tlsconfig"
	"github.com/flotilla-kv/flotilla/router"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

const demoSummary = `flotilla demo [flags]: start placementd and shardnodes as child processes on
loopback (data in a temporary directory), wait until every shard has a leader,
run a workload through the router, print nodes, shards, throughput and
latency, then keep the fleet running until Ctrl-C. With --duration it stops
the fleet and exits 0 on its own.`

type demoConfig struct {
	nodes    int
	shards   int
	clients  int
	workload time.Duration
	duration time.Duration
	dir      string
	binDir   string
	value    int
	keys     int
	listen   string
	tls      bool
}

func runDemo(ctx context.Context, args []string, out io.Writer) error {
	var c demoConfig
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.IntVar(&c.nodes, "nodes", 3, "shardnodes to start")
	fs.IntVar(&c.shards, "shards", 16, "shards placement creates at bootstrap")
	fs.IntVar(&c.clients, "clients", 32, "concurrent clients of the workload")
	fs.DurationVar(&c.workload, "workload", 5*time.Second, "how long the workload runs")
	fs.DurationVar(&c.duration, "duration", 0, "stop everything and exit after this long in total, the fleet's start included, so longer than --workload (0: run until Ctrl-C)")
	fs.StringVar(&c.dir, "dir", "", "data directory for the fleet (default: a new temporary directory, removed at exit)")
	fs.StringVar(&c.binDir, "bin", "", "directory holding the shardnode and placementd binaries (default: next to flotilla, then $PATH)")
	fs.IntVar(&c.value, "value-size", 256, "bytes per value written by the workload")
	fs.IntVar(&c.keys, "keys", 10000, "distinct keys of the workload")
	fs.StringVar(&c.listen, "placement-listen", "127.0.0.1:7000", "address of the demo's placement service (the other commands' default --placement); a free port is used if it is taken")
	fs.BoolVar(&c.tls, "tls", false, "run the fleet with mutual TLS: a development CA and certificates are made in DIR/tls, and every gRPC connection, the workload's included, uses them")
	if err := cli.Parse(fs, args, demoSummary); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		fmt.Fprintln(os.Stderr, err)
		return errUsage
	}
	var p cli.Problems
	if c.nodes < 1 {
		p.Addf("--nodes must be at least 1")
	}
	if c.shards < 1 || c.clients < 1 || c.keys < 1 || c.value < 0 {
		p.Addf("--shards, --clients and --keys must be positive, --value-size not negative")
	}
	if c.workload <= 0 {
		p.Addf("--workload must be positive, got %s", c.workload)
	}
	if c.duration < 0 || (c.duration > 0 && c.duration <= c.workload) {
		p.Addf("--duration (%s) bounds the whole demo, the fleet's start included: make it longer than --workload (%s), or 0 to run until Ctrl-C", c.duration, c.workload)
	}
	if err := p.Err(); err != nil {
		return err
	}
	began := time.Now()
	if c.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.duration)
		defer cancel()
	}
	// outOfTime names --duration when it is what cut the demo short.
	outOfTime := func(err error) error {
		if c.duration > 0 && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("--duration %s ran out %s into the demo, before the workload finished; give it more: %w", c.duration, time.Since(began).Round(time.Millisecond), err)
		}
		return err
	}
	f, err := startFleet(ctx, c, out)
	if f != nil {
		defer f.stop(out)
	}
	if err != nil {
		return outOfTime(err)
	}
	if err := f.waitShards(ctx, c.shards); err != nil {
		return outOfTime(err)
	}
	fmt.Fprintf(out, "\nfleet ready in %s: placement at %s, status page at %s\n\n", time.Since(began).Round(time.Millisecond), f.placement, f.statusURL)
	tlsCfg, err := tlsconfig.Load(f.tls)
	if err != nil {
		return err
	}
	r, err := router.New(ctx, router.Config{PlacementAddresses: []string{f.placement}, DialOptions: []grpc.DialOption{tlsCfg.DialOption()}})
	if err != nil {
		return outOfTime(err)
	}
	defer r.Close()
	res := workload(ctx, r, c)
	if err := f.printCluster(ctx, out); err != nil {
		return outOfTime(err)
	}
	res.print(out, c)
	if ctx.Err() != nil {
		return nil
	}
	if c.duration > 0 {
		fmt.Fprintf(out, "\nthe fleet stops at --duration (%s)\n", c.duration)
	} else {
		tlsArgs := strings.Join(f.tls.Args(), " ")
		if tlsArgs != "" {
			tlsArgs += " "
		}
		fmt.Fprintf(out, "\nthe fleet keeps running: try\n  flotilla put --placement %s %shello world   (see 'flotilla --help')\nCtrl-C stops it.\n", f.placement, tlsArgs)
	}
	<-ctx.Done()
	return nil
}

// fleet is the demo's child processes.
type fleet struct {
	dir       string
	temp      bool
	placement string
	statusURL string
	procs     []*exec.Cmd
	names     []string
	tls       tlsconfig.Files // the client's files; zero without --tls
}

func findBinary(dir, name string) (string, error) {
	if dir != "" {
		return filepath.Join(dir, name), nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found next to flotilla nor in $PATH (build it with 'make build', or pass --bin)", name)
	}
	return p, nil
}

func startFleet(ctx context.Context, c demoConfig, out io.Writer) (*fleet, error) {
	f := &fleet{dir: c.dir}
	if f.dir != "" {
		if err := os.MkdirAll(f.dir, 0o755); err != nil {
			return nil, err
		}
	} else {
		d, err := os.MkdirTemp("", "flotilla-demo-")
		if err != nil {
			return nil, err
		}
		f.dir, f.temp = d, true
	}
	pd, err := findBinary(c.binDir, "placementd")
	if err != nil {
		return nil, err
	}
	sn, err := findBinary(c.binDir, "shardnode")
	if err != nil {
		return nil, err
	}
	addrs, err := ports.Free(2 * (c.nodes + 1))
	if err != nil {
		return nil, err
	}
	if l, err := net.Listen("tcp", c.listen); err == nil {
		l.Close()
		addrs[0] = c.listen
	}
	f.placement = addrs[0]
	// tlsArgs returns the TLS flags of process name (none without --tls).
	tlsArgs := func(string) ([]string, error) { return nil, nil }
	if c.tls {
		ca, err := tlsconfig.NewDevCA(30 * 24 * time.Hour)
		if err != nil {
			return f, err
		}
		tlsDir := filepath.Join(f.dir, "tls")
		// The demo owns DIR/tls: certificates of an earlier run are replaced.
		tlsArgs = func(name string) ([]string, error) {
			files, err := tlsconfig.WriteDevFiles(ca, tlsDir, name, tlsconfig.DefaultHosts, true /* force */)
			return files.Args(), err
		}
		if f.tls, err = tlsconfig.WriteDevFiles(ca, tlsDir, "client", tlsconfig.DefaultHosts, true /* force */); err != nil {
			return f, err
		}
		fmt.Fprintf(out, "mutual TLS: CA and certificates in %s\n", tlsDir)
	}
	fmt.Fprintf(out, "starting placementd and %d shardnodes in %s\n", c.nodes, f.dir)
	var readyz []string
	ptls, err := tlsArgs("placement-1")
	if err != nil {
		return f, err
	}
	if err := f.start(pd, "placementd", append([]string{"--id", "1", "--listen", addrs[0], "--http", addrs[1],
		"--data-dir", filepath.Join(f.dir, "placement"), "--initial-shards", fmt.Sprint(c.shards),
		"--replication-factor", fmt.Sprint(min(3, c.nodes)), "--down-after", "10s"}, ptls...)...); err != nil {
		return f, err
	}
	readyz = append(readyz, addrs[1])
	f.statusURL = "http://" + addrs[1] + "/"
	for i := 1; i <= c.nodes; i++ {
		grpcAddr, httpAddr := addrs[2*i], addrs[2*i+1]
		ntls, err := tlsArgs(fmt.Sprintf("node-%d", i))
		if err != nil {
			return f, err
		}
		if err := f.start(sn, fmt.Sprintf("shardnode-%d", i), append([]string{"--node-id", fmt.Sprint(i), "--listen", grpcAddr, "--http", httpAddr,
			"--data-dir", filepath.Join(f.dir, fmt.Sprintf("node%d", i)), "--placement", f.placement}, ntls...)...); err != nil {
			return f, err
		}
		readyz = append(readyz, httpAddr)
	}
	for _, a := range readyz {
		if err := waitReady(ctx, a); err != nil {
			return f, fmt.Errorf("%w (logs in %s)", err, f.dir)
		}
	}
	return f, nil
}

func (f *fleet) start(bin, name string, args ...string) error {
	logf, err := os.Create(filepath.Join(f.dir, name+".log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting %s: %w", name, err)
	}
	f.procs = append(f.procs, cmd)
	f.names = append(f.names, name)
	return nil
}

func waitReady(ctx context.Context, httpAddr string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/readyz", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w", httpAddr, ctx.Err())
		case <-t.C:
		}
	}
}

// waitShards waits until placement knows n shards and each has a leader.
func (f *fleet) waitShards(ctx context.Context, n int) error {
	c := common{placement: f.placement, tls: f.tls}
	pc, done, err := c.placementClient()
	if err != nil {
		return err
	}
	defer done()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	have := 0
	for {
		if resp, err := pc.ListShards(ctx, &pb.ListShardsRequest{}); err == nil {
			have = 0
			for _, s := range resp.GetShards() {
				if s.GetRoute().GetLeaderNodeId() != 0 {
					have++
				}
			}
			if have >= n {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("only %d of %d shards have a leader: %w (logs in %s)", have, n, ctx.Err(), f.dir)
		case <-t.C:
		}
	}
}

func (f *fleet) printCluster(ctx context.Context, out io.Writer) error {
	c := common{placement: f.placement, tls: f.tls}
	pc, done, err := c.placementClient()
	if err != nil {
		return err
	}
	defer done()
	nodes, err := pc.ListNodes(ctx, &pb.ListNodesRequest{})
	if err != nil {
		return err
	}
	shards, err := pc.ListShards(ctx, &pb.ListShardsRequest{})
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "nodes:")
	printNodes(out, nodes.GetNodes())
	fmt.Fprintln(out, "\nshards:")
	printShards(out, shards.GetShards())
	return nil
}

// stop sends SIGTERM to every child, waits, and removes a temporary dir.
func (f *fleet) stop(out io.Writer) {
	for i := len(f.procs) - 1; i >= 0; i-- {
		_ = f.procs[i].Process.Signal(syscall.SIGTERM)
	}
	for i, p := range f.procs {
		done := make(chan error, 1)
		go func() { done <- p.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				fmt.Fprintf(out, "%s exited: %v\n", f.names[i], err)
			}
		case <-time.After(15 * time.Second):
			_ = p.Process.Kill()
			fmt.Fprintf(out, "%s did not stop in time: killed\n", f.names[i])
		}
	}
	if f.temp {
		_ = os.RemoveAll(f.dir)
	}
	fmt.Fprintln(out, "fleet stopped")
}

// results of the workload.
type results struct {
	mu        sync.Mutex
	latencies map[string][]time.Duration
	errors    map[string]int
	elapsed   time.Duration
}

// workload runs clients doing 50% puts, 50% linearizable gets over random
// keys for c.workload.
func workload(ctx context.Context, r *router.Client, c demoConfig) *results {
	res := &results{latencies: map[string][]time.Duration{}, errors: map[string]int{}}
	wctx, cancel := context.WithTimeout(ctx, c.workload)
	defer cancel()
	value := []byte(strings.Repeat("v", c.value))
	start := time.Now()
	var wg sync.WaitGroup
	for i := range c.clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), uint64(start.UnixNano())))
			var lat = map[string][]time.Duration{}
			errs := map[string]int{}
			for wctx.Err() == nil {
				key := demoKey(rng.IntN(c.keys))
				op := "put"
				t0 := time.Now()
				var err error
				if rng.IntN(2) == 0 {
					err = r.Put(wctx, key, value)
				} else {
					op = "get"
					_, _, err = r.Get(wctx, key)
				}
				if err != nil {
					if wctx.Err() == nil {
						errs[op]++
					}
					continue
				}
				lat[op] = append(lat[op], time.Since(t0))
			}
			res.mu.Lock()
			for k, v := range lat {
				res.latencies[k] = append(res.latencies[k], v...)
			}
			for k, v := range errs {
				res.errors[k] += v
			}
			res.mu.Unlock()
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	return res
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p))]
}

func (r *results) print(out io.Writer, c demoConfig) {
	fmt.Fprintf(out, "\nworkload: %d clients, 50%% puts of %d-byte values / 50%% linearizable gets over %d hashed keys, %s\n",
		c.clients, c.value, c.keys, r.elapsed.Round(time.Millisecond))
	var rows [][]string
	for _, op := range []string{"put", "get"} {
		l := r.latencies[op]
		slices.Sort(l)
		rows = append(rows, []string{op, fmt.Sprint(len(l)), fmt.Sprintf("%.0f", float64(len(l))/r.elapsed.Seconds()),
			ms(percentile(l, 0.5)), ms(percentile(l, 0.9)), ms(percentile(l, 0.99)), fmt.Sprint(r.errors[op])})
	}
	table(out, "OP\tCOUNT\tOPS/S\tP50\tP90\tP99\tERRORS", rows)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d.Microseconds())/1000) }

// demoKey spreads the workload over the whole key space, as hashed keys
// (YCSB's "user" keys) do: the first byte comes from a hash of i, so every
// initial shard, split on the first byte, gets its share.
func demoKey(i int) []byte {
	h := fnv.New32a()
	fmt.Fprint(h, i)
	return fmt.Appendf([]byte{byte(h.Sum32())}, "key-%08d", i)
}
