package target

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/flotilla-kv/flotilla/bench"
	"github.com/flotilla-kv/flotilla/internal/fleet"
	"github.com/flotilla-kv/flotilla/internal/launch"
	"github.com/flotilla-kv/flotilla/internal/poll"
	"github.com/flotilla-kv/flotilla/internal/ports"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// The names of the targets, as COMPAT_TARGETS lists them.
const (
	// Etcd is a real etcd server built from the release that
	// bench/etcdtool pins: the baseline that shows a test checks the
	// right thing.
	Etcd = "etcd"
	// Flotilla is a Flotilla fleet whose shardnodes serve the etcd API
	// (--etcd-listen).
	Flotilla = "flotilla"
)

// EnvTargets names the environment variable that chooses the targets, a
// comma-separated list of Etcd and Flotilla; unset or empty means both,
// etcd first.
const EnvTargets = "COMPAT_TARGETS"

// startTimeout bounds the start of one target, builds excluded.
const startTimeout = 60 * time.Second

// Target is a running server speaking the etcd v3 API, stopped when the
// test that started it ends. Its fields are read-only after Start.
type Target struct {
	// Name is Etcd or Flotilla.
	Name string
	// Endpoints are the host:port addresses of the members' etcd client
	// API, one per member, in member order.
	Endpoints []string
	// Dir holds the target's data and logs; it is a temporary
	// directory of the test, removed when the test ends.
	Dir string

	logs func() string
	// shards lists the shards' key ranges (Flotilla only).
	shards func(ctx context.Context) ([]*pb.Descriptor, error)
}

// Options shape a target. The zero value is a single-member etcd and a
// Flotilla fleet of three shardnodes.
type Options struct {
	// EtcdMembers is the number of etcd members; 0 means 1.
	EtcdMembers int
	// FlotillaNodes is the number of shardnodes; 0 means 3.
	FlotillaNodes int
}

// Names returns the targets chosen by COMPAT_TARGETS, failing the test on
// an unknown name.
func Names(t testing.TB) []string {
	t.Helper()
	v := strings.TrimSpace(os.Getenv(EnvTargets))
	if v == "" {
		return []string{Etcd, Flotilla}
	}
	var names []string
	for _, n := range strings.Split(v, ",") {
		n = strings.TrimSpace(n)
		switch n {
		case Etcd, Flotilla:
			names = append(names, n)
		case "":
		default:
			t.Fatalf("%s=%q: unknown target %q (want %s or %s)", EnvTargets, v, n, Etcd, Flotilla)
		}
	}
	return names
}

// Start starts the target called name and waits until every member
// answers a read through clientv3; the target stops when t ends.
func Start(t testing.TB, name string, opts Options) *Target {
	t.Helper()
	var tg *Target
	switch name {
	case Etcd:
		tg = startEtcd(t, max(opts.EtcdMembers, 1))
	case Flotilla:
		tg = startFlotilla(t, orDefault(opts.FlotillaNodes, 3))
	default:
		t.Fatalf("target: unknown target %q", name)
	}
	tg.Name = name
	tg.waitServing(t)
	return tg
}

// orDefault returns v, or def when v is 0.
func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// Logs returns the logs of the target's processes, for a failure message.
func (tg *Target) Logs() string { return tg.logs() }

// ShardsOver returns how many of a Flotilla target's shards hold keys
// with the given prefix, or 0 for a target without shards (etcd).
func (tg *Target) ShardsOver(t testing.TB, prefix string) int {
	t.Helper()
	if tg.shards == nil {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ds, err := tg.shards(ctx)
	if err != nil {
		t.Fatalf("target %s: listing the shards: %v", tg.Name, err)
	}
	start, end := []byte(prefix), []byte(clientv3.GetPrefixRangeEnd(prefix))
	n := 0
	for _, d := range ds {
		// [d.Start, d.End) meets [start, end); an empty End is the
		// end of the key space.
		if (len(d.GetEnd()) == 0 || bytes.Compare(d.GetEnd(), start) > 0) && bytes.Compare(d.GetStart(), end) < 0 {
			n++
		}
	}
	return n
}

// Client returns a clientv3 client of every endpoint, closed when t ends.
func (tg *Target) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(tg.ClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// ClientConfig returns a clientv3 configuration of every endpoint.
func (tg *Target) ClientConfig() clientv3.Config {
	return clientv3.Config{Endpoints: tg.Endpoints, DialTimeout: 10 * time.Second, Logger: zap.NewNop()}
}

// waitServing polls each endpoint with a linearizable Get until it
// answers, failing t with the target's logs at the deadline.
func (tg *Target) waitServing(t testing.TB) {
	t.Helper()
	for _, ep := range tg.Endpoints {
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		err = poll.Until(context.Background(), startTimeout, 100*time.Millisecond, func(ctx context.Context) error {
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			_, err := c.Get(rctx, "target-ready-probe")
			return err
		})
		_ = c.Close()
		if err != nil {
			t.Fatalf("target %s: endpoint %s does not serve the etcd API: %v\nlogs:\n%s", tg.Name, ep, err, tg.Logs())
		}
	}
}

// Root returns the directory of the Flotilla checkout holding this
// package.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// startEtcd starts members etcd members on loopback in a temporary
// directory, from bench's cached build of etcd (built once into
// .cache/etcd). Watch progress notifications come every second, as the
// Kubernetes storage tests of progress notification need; fsync is off,
// as in Kubernetes's own test server, since the data is thrown away.
func startEtcd(t testing.TB, members int) *Target {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	bin, _, err := bench.EnsureEtcd(ctx, bench.EtcdBuild{
		SourceDir: filepath.Join(Root(), "bench", "etcdtool"),
		Log:       testWriter{t},
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	addrs, err := ports.Free(2 * members)
	if err != nil {
		t.Fatal(err)
	}
	var initial []string
	for i := range members {
		initial = append(initial, fmt.Sprintf("m%d=http://%s", i+1, addrs[2*i+1]))
	}
	tg := &Target{Dir: dir}
	var procs []*launch.Process
	tg.logs = func() string {
		var b strings.Builder
		for _, p := range procs {
			fmt.Fprintf(&b, "--- %s\n%s\n", p.Name, p.Log())
		}
		return b.String()
	}
	for i := range members {
		name := fmt.Sprintf("m%d", i+1)
		client, peer := "http://"+addrs[2*i], "http://"+addrs[2*i+1]
		p := &launch.Process{Name: "etcd-" + name, Bin: bin, LogPath: filepath.Join(dir, "etcd-"+name+".log")}
		err := p.Start("--name", name, "--data-dir", filepath.Join(dir, name),
			"--listen-client-urls", client, "--advertise-client-urls", client,
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", "flotilla-compat", "--log-level", "warn",
			"--watch-progress-notify-interval", "1s", "--unsafe-no-fsync")
		if err != nil {
			t.Fatal(err)
		}
		procs = append(procs, p)
		t.Cleanup(func() { _ = p.Kill(context.Background()) })
		tg.Endpoints = append(tg.Endpoints, addrs[2*i])
	}
	return tg
}

// startFlotilla starts a placementd and nodes shardnodes on loopback,
// each serving the etcd API on a port of its own (launch's Options.Etcd:
// --etcd-listen) and sending watch progress notifications every second. The placementd makes 4 shards at bootstrap, split over
// the key space's first bytes, and splits any shard past 64 KiB, so that
// the tests' prefixes come to span shards while they run.
func startFlotilla(t testing.TB, nodes int) *Target {
	t.Helper()
	fleet.Binary(t, "placementd")
	bin := filepath.Dir(fleet.Binary(t, "shardnode"))
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	dir := t.TempDir()
	f, err := launch.Start(ctx, launch.Options{
		Dir: dir, BinDir: bin, Nodes: nodes, PlacementReplicas: 1, Shards: 4, Etcd: true,
		// Progress notifications every second, as the etcd target sends
		// them.
		NodeArgs: []string{"--heartbeat-interval", "250ms", "--etcd-watch-progress-interval", "1s"},
		PlacementArgs: []string{"--heartbeat-interval", "250ms", "--schedule-interval", "250ms",
			"--split-size", "64KiB"},
	})
	if err != nil {
		t.Fatalf("target %s: %v (logs in %s)", Flotilla, err, dir)
	}
	t.Cleanup(f.Close)
	tg := &Target{Dir: dir}
	tg.logs = func() string {
		var b strings.Builder
		for _, n := range append(f.Placements(), f.Nodes()...) {
			fmt.Fprintf(&b, "--- %s\n%s\n", n.Name, n.Log())
		}
		return b.String()
	}
	tg.shards = func(ctx context.Context) ([]*pb.Descriptor, error) {
		conn, err := f.Placements()[0].Conn()
		if err != nil {
			return nil, err
		}
		resp, err := pb.NewPlacementClient(conn).ListShards(ctx, &pb.ListShardsRequest{})
		if err != nil {
			return nil, err
		}
		var ds []*pb.Descriptor
		for _, s := range resp.GetShards() {
			ds = append(ds, s.GetRoute().GetShard())
		}
		return ds, nil
	}
	for _, n := range f.Nodes() {
		if n.EtcdAddr() == "" {
			t.Fatalf("target %s: shardnode %d serves no etcd API", Flotilla, n.ID)
		}
		tg.Endpoints = append(tg.Endpoints, n.EtcdAddr())
	}
	return tg
}

// testWriter sends a build's progress lines to the test log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
