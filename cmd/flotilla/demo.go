package main

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/flotilla-kv/flotilla/internal/cli"
	"github.com/flotilla-kv/flotilla/internal/launch"
	"github.com/flotilla-kv/flotilla/internal/tlsconfig"
	"github.com/flotilla-kv/flotilla/router"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

const demoSummary = `flotilla demo [flags]: start placementd and shardnodes as child processes on
loopback (data in a temporary directory), wait until every shard has a leader,
print each process's addresses (gRPC, HTTP with /metrics and /readyz, etcd
API), run a workload through the router, print nodes, shards, throughput and
latency, then keep the fleet running until Ctrl-C, printing commands to try
against it. With --duration it stops the fleet and exits 0 on its own.`

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

func newDemoCmd() *cobra.Command {
	var c demoConfig
	cmd := &cobra.Command{
		Use:   "demo [flags]",
		Short: "start placementd and shardnodes locally, run a workload through the router, print the results",
		Long:  demoSummary,
		Args:  noArgs,
	}
	fs := cmd.Flags()
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
	cmd.RunE = run(func(ctx context.Context, _ *cobra.Command, _ []string, out io.Writer) error {
		return runDemo(ctx, c, out)
	})
	return cmd
}

// runDemo is flotilla demo with the flags c.
func runDemo(ctx context.Context, c demoConfig, out io.Writer) error {
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
		return &usageError{msg: err.Error()}
	}
	began := time.Now()
	if c.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.duration)
		defer cancel()
	}
	// outOfTime names --duration when it is what cut the demo short; a
	// demo cut short by Ctrl-C (the context canceled) ends without error.
	outOfTime := func(err error) error {
		if errors.Is(ctx.Err(), context.Canceled) {
			return nil
		}
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
	fmt.Fprintf(out, "\nfleet ready in %s: placement at %s, status page at %s, etcd API at %s\n\n", time.Since(began).Round(time.Millisecond), f.placement(), f.statusURL(), strings.Join(f.etcdEndpoints(), ","))
	f.printEndpoints(out)
	r, err := router.New(ctx, router.Config{PlacementAddresses: []string{f.placement()},
		DialOptions: []grpc.DialOption{f.ClientTLSConfig().DialOption()}, FramedTLS: f.ClientTLSConfig().ClientTLS()})
	if err != nil {
		return outOfTime(err)
	}
	defer r.Close()
	res := workload(ctx, r, c)
	if errors.Is(ctx.Err(), context.Canceled) {
		// Ctrl-C during the workload: what ran, then the fleet stops.
		res.print(out, c)
		return nil
	}
	if err := f.printCluster(ctx, out); err != nil {
		return outOfTime(err)
	}
	res.print(out, c)
	if ctx.Err() != nil {
		return nil
	}
	if c.duration > 0 {
		left := c.duration - time.Since(began)
		fmt.Fprintf(out, "\nthe fleet runs until --duration (%s, about %s more): try\n", c.duration, left.Round(time.Second))
		f.printHints(out)
	} else {
		fmt.Fprintf(out, "\nthe fleet keeps running: try\n")
		f.printHints(out)
		fmt.Fprintln(out, "Ctrl-C stops it.")
	}
	<-ctx.Done()
	return nil
}

// printEndpoints prints a table of the fleet's processes and their
// addresses: gRPC, HTTP (/metrics, /readyz, and placement's status page)
// and the shardnodes' etcd API.
func (f *demoFleet) printEndpoints(out io.Writer) {
	var rows [][]string
	for _, p := range f.Placements() {
		rows = append(rows, []string{"placementd", fmt.Sprint(p.ID), p.Addr, p.HTTP, "-"})
	}
	for _, n := range f.Nodes() {
		rows = append(rows, []string{"shardnode", fmt.Sprint(n.ID), n.Addr, n.HTTP, n.EtcdAddr()})
	}
	table(out, "PROCESS\tID\tGRPC\tHTTP (/metrics, /readyz)\tETCD API", rows)
	fmt.Fprintln(out)
}

// printHints prints commands to run against the fleet while it is up,
// with its real addresses (and client certificates under --tls): one per
// line, each a command a shell can run as it is, a comment after "#".
func (f *demoFleet) printHints(out io.Writer) {
	flags := "--placement " + f.placement()
	if args := f.ClientTLS().Args(); len(args) > 0 {
		flags += " " + strings.Join(args, " ")
	}
	flotilla := func(verb, args string) string { return "flotilla " + verb + " " + flags + " " + args }
	etcdctl := "etcdctl --endpoints " + strings.Join(f.etcdEndpoints(), ",") + etcdctlTLSArgs(f.ClientTLS())
	// The HTTP endpoints are plain HTTP, --tls or not.
	metrics := "http://" + f.Nodes()[0].HTTP + "/metrics"
	for _, h := range [][2]string{
		{flotilla("put", "hello world"), "write a key (see 'flotilla --help')"},
		{flotilla("get", "hello"), "read it back"},
		{flotilla("scan", "--limit 10"), "the first keys in key order (the workload's, hashed)"},
		{flotilla("watch", "--prefix hello"), "print writes as they happen, until Ctrl-C"},
		{flotilla("status", ""), "the fleet's health, as the status page shows it"},
		{etcdctl + " get hello", "any etcd v3 client works"},
		{"curl -s " + metrics + " | grep ^flotilla_pebble", "a node's metrics (Prometheus text)"},
	} {
		fmt.Fprintf(out, "  %s   # %s\n", strings.TrimSpace(h[0]), h[1])
	}
	fmt.Fprintf(out, "and the status page at %s\n", f.statusURL())
}

// demoFleet is the demo's fleet (internal/launch) and where it lives.
type demoFleet struct {
	*launch.Fleet
	temp bool // Dir is a temporary directory, removed by stop
}

// startFleet starts placementd and c.nodes shardnodes in c.dir (or a new
// temporary directory) and waits until each is ready. The fleet is
// returned, to be stopped, also with an error once processes may run.
func startFleet(ctx context.Context, c demoConfig, out io.Writer) (*demoFleet, error) {
	f := &demoFleet{}
	dir := c.dir
	if dir == "" {
		d, err := os.MkdirTemp("", "flotilla-demo-")
		if err != nil {
			return nil, err
		}
		dir, f.temp = d, true
	}
	lf, err := launch.New(launch.Options{
		Dir: dir, BinDir: c.binDir, Nodes: c.nodes,
		PlacementReplicas: 1, PlacementAddr: c.listen, Shards: c.shards, ReplicationFactor: min(3, c.nodes),
		PlacementArgs: []string{"--down-after", "10s"},
		TLS:           c.tls,
		Etcd:          true,
	})
	if err != nil {
		if f.temp {
			_ = os.RemoveAll(dir)
		}
		if errors.Is(err, launch.ErrNotFound) {
			err = fmt.Errorf("%w (build it with 'make build', or pass --bin)", err)
		}
		return nil, err
	}
	f.Fleet = lf
	if c.tls {
		fmt.Fprintf(out, "mutual TLS: CA and certificates in %s\n", lf.TLSDir())
	}
	fmt.Fprintf(out, "starting placementd and %d shardnodes in %s\n", c.nodes, dir)
	if err := lf.Start(ctx); err != nil {
		return f, fmt.Errorf("%w (logs in %s)", err, dir)
	}
	return f, nil
}

// etcdEndpoints returns the addresses of the nodes' etcd API.
func (f *demoFleet) etcdEndpoints() []string {
	var eps []string
	for _, n := range f.Nodes() {
		eps = append(eps, n.EtcdAddr())
	}
	return eps
}

// etcdctlTLSArgs returns etcdctl's flags for the client certificate of
// files (none without TLS).
func etcdctlTLSArgs(files tlsconfig.Files) string {
	if files.CA == "" {
		return ""
	}
	return fmt.Sprintf(" --cacert %s --cert %s --key %s", files.CA, files.Cert, files.Key)
}

// placement returns the address of the demo's one placement replica.
func (f *demoFleet) placement() string { return f.PlacementAddrs()[0] }

// statusURL returns the address of placement's status page.
func (f *demoFleet) statusURL() string { return "http://" + f.Placements()[0].HTTP + "/" }

// waitShards waits until placement knows n shards and each has a leader.
func (f *demoFleet) waitShards(ctx context.Context, n int) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	return f.WaitLeaders(ctx, n)
}

func (f *demoFleet) printCluster(ctx context.Context, out io.Writer) error {
	c := common{placement: f.placement(), tls: f.ClientTLS()}
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

// stop sends SIGTERM to every child (killing one that does not exit
// within 15 s), says which did not stop cleanly, and removes a temporary
// directory.
func (f *demoFleet) stop(out io.Writer) {
	if err := f.Stop(15 * time.Second); err != nil {
		fmt.Fprintln(out, err)
	}
	if f.temp {
		_ = os.RemoveAll(f.Dir)
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
