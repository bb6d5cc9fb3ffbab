// Command shardnode runs one Flotilla node: it hosts a replica of many
// shards, each a Raft group on the shared multiraft engine, and serves the
// KV, Admin and Raft gRPC services, the standard gRPC health service and
// reflection, and /healthz and /readyz over HTTP; with --etcd-listen it
// also serves the etcd v3 API (package etcdapi) on a port of its own.
//
// Run `shardnode --help` for every flag. Each flag may also be given as an
// environment variable (FLOTILLA_NODE_ID for --node-id, and so on).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/flotilla-kv/flotilla/etcdapi"
	"github.com/flotilla-kv/flotilla/internal/cli"
	"github.com/flotilla-kv/flotilla/internal/pebbleopts"
	"github.com/flotilla-kv/flotilla/internal/tlsconfig"
	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/shard"
)

const summary = `shardnode: a Flotilla node hosting replicas of many shards.

Usage: shardnode --node-id N --data-dir DIR [flags]

On SIGTERM or SIGINT it stops taking requests, hands its leaderships to
other replicas, flushes and exits 0.`

func main() {
	cfg, err := parseConfig(os.Args[1:])
	if err == flag.ErrHelp {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "shardnode: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintf(os.Stderr, "shardnode: %v\n", err)
		os.Exit(1)
	}
}

// Config is the node's configuration, filled from flags and environment.
type Config struct {
	NodeID        uint64
	Listen        string
	Advertise     string
	HTTP          string
	DataDir       string
	Peers         string
	Forward       bool
	SnapshotRate  cli.Bytes
	BlockCache    cli.Bytes
	MaxSnapshots  int
	Workers       int
	Tick          time.Duration
	ElectionTicks int
	HeartbeatTick int
	ShutdownAfter time.Duration
	// LeaseCheckpoint is lease.Config.CheckpointInterval.
	LeaseCheckpoint time.Duration
	Placement       string
	Zone            string
	Rack            string
	Heartbeat       time.Duration
	Pprof           bool
	LogFormat       string
	LogLevel        string
	// TLS holds --tls-cert, --tls-key and --tls-ca: all three turn on
	// mutual TLS for every gRPC connection in and out.
	TLS tlsconfig.Files
	// EtcdListen, when set, is where the node serves the etcd v3 API;
	// EtcdAdvertise is the address it publishes for it (default:
	// EtcdListen). ClusterName names the fleet: the etcd API's cluster ID
	// is its hash (clusterID).
	EtcdListen, EtcdAdvertise, ClusterName string
	// EtcdProgressInterval is the etcd API's watch progress interval
	// (etcdapi.Config.WatchProgressInterval).
	EtcdProgressInterval time.Duration
	// GC* configure the collection of replicas their shard no longer
	// counts (rpc.ReplicaGC).
	GCInterval        time.Duration
	GCLeaderlessAfter time.Duration
	GCEmptyAfter      time.Duration
	// HistoryGC configures the collection of history no read needs
	// (gc.go).
	HistoryGC historyGCConfig
	// LockSweep configures the sweeping of expired transaction locks
	// (locksweep.go).
	LockSweep lockSweepConfig
	// TxnRecordRetention is shard.Config.TxnRecordRetention (0: records
	// are kept forever); see shardConfig.
	TxnRecordRetention time.Duration
	// Capacity is how many bytes of user data the node offers placement;
	// 0 is the size of the filesystem holding DataDir (see capacityBytes).
	Capacity cli.Bytes
}

// minTxnRecordRetention is the shortest --txn-record-retention accepted:
// ten times the router's default lock TTL (5 s) and more than the few
// seconds a shard needs to elect a leader.
const minTxnRecordRetention = time.Minute

// shardConfig is the shard.Config of the node's Store.
func (c Config) shardConfig() shard.Config {
	sc := shard.Config{TxnRecordRetention: c.TxnRecordRetention}
	if sc.TxnRecordRetention == 0 {
		sc.TxnRecordRetention = -1 // kept forever
	}
	return sc
}

func parseConfig(args []string) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("shardnode", flag.ContinueOnError)
	fs.Uint64Var(&c.NodeID, "node-id", 0, "this node's ID, a positive integer unique in the cluster and never reused (required)")
	fs.StringVar(&c.Listen, "listen", "127.0.0.1:7100", "address the gRPC server listens on (KV, Admin, Raft, health, reflection)")
	fs.StringVar(&c.Advertise, "advertise", "", "address other nodes and clients use to reach this node (default: --listen)")
	fs.StringVar(&c.HTTP, "http", "127.0.0.1:7180", "address of the HTTP server with /metrics (Prometheus), /healthz and /readyz; empty disables it")
	fs.StringVar(&c.DataDir, "data-dir", "", "directory of the node's Pebble store; created if missing (required)")
	fs.StringVar(&c.Peers, "peers", "", "addresses of the other nodes as ID=host:port,ID=host:port (used to reach shard replicas)")
	fs.BoolVar(&c.Forward, "forward", false, "proxy KV requests for shards this node does not lead to their leader, instead of answering NotLeader")
	c.SnapshotRate = 64 << 20
	fs.Var(&c.SnapshotRate, "snapshot-rate", "bytes per second this node sends in snapshots, across all transfers (0: unlimited)")
	c.BlockCache = pebbleopts.DefaultBlockCacheBytes
	fs.Var(&c.BlockCache, "block-cache", "size of the Pebble block cache of recently read table blocks, uncompressed (0: the default)")
	fs.Var(&c.Capacity, "capacity",
		"bytes of user data this node offers, reported to placement, which keeps replicas off a node past 95% of it and, once a node fills 5% of it, balances replicas by the used fraction of capacity (e.g. 500GiB; 0: the size of the filesystem holding --data-dir; give it when several nodes share one filesystem)")
	fs.IntVar(&c.MaxSnapshots, "max-concurrent-snapshots", 2, "snapshots sent, and received, at once")
	fs.IntVar(&c.Workers, "workers", 0, "engine worker goroutines (0: twice the number of CPUs)")
	fs.DurationVar(&c.Tick, "tick", 100*time.Millisecond, "duration of one Raft tick; election and heartbeat timeouts are counted in ticks")
	fs.IntVar(&c.ElectionTicks, "election-ticks", multiraft.DefaultElectionTicks, "Raft election timeout in ticks")
	fs.IntVar(&c.HeartbeatTick, "heartbeat-ticks", multiraft.DefaultHeartbeatTicks, "Raft heartbeat interval in ticks")
	fs.DurationVar(&c.LeaseCheckpoint, "lease-checkpoint-interval", 5*time.Second, "the remaining TTL of a lease longer than this is written through Raft whenever it fell this much, or a quarter of the TTL if more, below the value written; a change of the lease's home leader extends the lease by at most that much")
	fs.DurationVar(&c.ShutdownAfter, "shutdown-timeout", 10*time.Second, "how long a graceful shutdown may take to hand off leaderships and finish requests")
	fs.StringVar(&c.Placement, "placement", "", "addresses of the placementd replicas, comma-separated; the node registers and reports to them (empty: shards are managed through the Admin service only)")
	fs.StringVar(&c.Zone, "zone", "", "zone label, so placement spreads a shard's replicas across zones")
	fs.StringVar(&c.Rack, "rack", "", "rack label")
	fs.DurationVar(&c.Heartbeat, "heartbeat-interval", time.Second, "how often the node reports to placement")
	fs.DurationVar(&c.GCInterval, "replica-gc-interval", 2*time.Second,
		"how often the node looks for replicas their shard no longer counts (removed while the node was away, or created empty for an add that never happened) and removes them; 0 disables it")
	fs.DurationVar(&c.GCLeaderlessAfter, "replica-gc-leaderless-after", 10*time.Second,
		"a replica that knows no leader for this long is checked with its shard's other replicas (longer than an election)")
	fs.DurationVar(&c.GCEmptyAfter, "replica-gc-empty-after", time.Minute,
		"an empty replica (waiting for its first snapshot) is checked with its shard's other replicas after this long (longer than any gap between creating a replica and adding it)")
	c.HistoryGC = defaultHistoryGC()
	c.HistoryGC.registerFlags(fs)
	c.LockSweep = defaultLockSweep()
	c.LockSweep.registerFlags(fs)
	fs.DurationVar(&c.TxnRecordRetention, "txn-record-retention", shard.DefaultTxnRecordRetention,
		"how long after its start, and after the record was written, the outcome record of a transaction across shards is kept before the history collector may delete it; past its start the transaction can prewrite nothing, and a lock of it that is still unresolved gets FailedPrecondition (outcome forgotten) from its resolvers, never a guessed outcome. It must exceed by far how long a lock may stay unresolved: its TTL, plus --lock-sweep-interval and the sweep's resolution, plus any time its shard or its primary's shard has no leader; every node of a fleet must use the same value; 0 keeps records forever")
	fs.StringVar(&c.EtcdListen, "etcd-listen", "",
		"address to serve the etcd v3 gRPC API on (KV, Watch, Lease, Cluster, Maintenance), so etcdctl, clientv3 and the Kubernetes API server can use the fleet through this node; mutual TLS like --listen when --tls-* are set; empty disables it")
	fs.StringVar(&c.EtcdAdvertise, "etcd-advertise", "",
		"address etcd clients use to reach this node's etcd API, published to placement so every node's member list names it (default: --etcd-listen; needs --etcd-listen)")
	fs.DurationVar(&c.EtcdProgressInterval, "etcd-watch-progress-interval", etcdapi.DefaultWatchProgressInterval,
		"how long an etcd watch created with progress notification goes without a response before the node sends it a progress response (etcd's --experimental-watch-progress-notify-interval)")
	fs.StringVar(&c.ClusterName, "cluster-name", "flotilla",
		"name of the fleet; the etcd API's cluster ID is a hash of it, so give every node of a fleet the same name, and different fleets different names")
	fs.BoolVar(&c.Pprof, "pprof", false, "serve Go runtime profiles under /debug/pprof/ on the --http address")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	c.TLS.RegisterFlags(fs, "this node, served to clients and peers and presented to peers and placement (the --http endpoints stay plaintext)")
	cli.VersionFlag(fs, "shardnode")
	if err := cli.Parse(fs, args, summary); err != nil {
		return c, err
	}
	if c.Advertise == "" {
		c.Advertise = c.Listen
	}
	if c.EtcdAdvertise == "" {
		c.EtcdAdvertise = c.EtcdListen
	}
	return c, c.Validate()
}

// Validate reports every problem of c at once.
func (c Config) Validate() error {
	var p cli.Problems
	if c.NodeID == 0 {
		p.Addf("--node-id is required and must be positive")
	}
	if c.DataDir == "" {
		p.Addf("--data-dir is required")
	}
	if c.Listen == "" {
		p.Addf("--listen is required")
	}
	if _, err := cli.ParsePeers(c.Peers); err != nil {
		p.Addf("--peers: %v", err)
	}
	if c.Capacity < 0 {
		p.Addf("--capacity must not be negative, got %d", c.Capacity)
	}
	if c.MaxSnapshots < 1 {
		p.Addf("--max-concurrent-snapshots must be at least 1, got %d", c.MaxSnapshots)
	}
	if c.Workers < 0 {
		p.Addf("--workers must not be negative, got %d", c.Workers)
	}
	if c.Tick <= 0 {
		p.Addf("--tick must be positive, got %s", c.Tick)
	}
	if c.HeartbeatTick < 1 || c.ElectionTicks <= c.HeartbeatTick {
		p.Addf("--election-ticks (%d) must exceed --heartbeat-ticks (%d) >= 1", c.ElectionTicks, c.HeartbeatTick)
	}
	if c.Heartbeat <= 0 {
		p.Addf("--heartbeat-interval must be positive, got %s", c.Heartbeat)
	}
	if c.GCInterval < 0 {
		p.Addf("--replica-gc-interval must not be negative, got %s", c.GCInterval)
	}
	if c.GCLeaderlessAfter <= 0 {
		p.Addf("--replica-gc-leaderless-after must be positive, got %s", c.GCLeaderlessAfter)
	}
	c.HistoryGC.validate(&p)
	c.LockSweep.validate(&p)
	switch {
	case c.TxnRecordRetention < 0:
		p.Addf("--txn-record-retention must not be negative, got %s", c.TxnRecordRetention)
	case c.TxnRecordRetention > 0 && c.TxnRecordRetention < minTxnRecordRetention:
		p.Addf("--txn-record-retention must be 0 (keep forever) or at least %s, got %s", minTxnRecordRetention, c.TxnRecordRetention)
	case c.TxnRecordRetention > 0 && c.LockSweep.Interval*10 > c.TxnRecordRetention:
		p.Addf("--lock-sweep-interval (%s) must be below a tenth of --txn-record-retention (%s): a lock must be swept long before its outcome record may go", c.LockSweep.Interval, c.TxnRecordRetention)
	}
	if c.GCEmptyAfter <= 0 {
		p.Addf("--replica-gc-empty-after must be positive, got %s", c.GCEmptyAfter)
	}
	if c.EtcdListen == "" && c.EtcdAdvertise != "" {
		p.Addf("--etcd-advertise needs --etcd-listen")
	}
	if c.ClusterName == "" {
		p.Addf("--cluster-name must not be empty")
	}
	if c.EtcdProgressInterval <= 0 {
		p.Addf("--etcd-watch-progress-interval must be positive, got %s", c.EtcdProgressInterval)
	}
	if c.ShutdownAfter <= 0 {
		p.Addf("--shutdown-timeout must be positive, got %s", c.ShutdownAfter)
	}
	if _, err := cli.NewLogger(os.Stderr, c.LogFormat, c.LogLevel); err != nil {
		p.Addf("%v", err)
	}
	for _, tp := range c.TLS.Problems() {
		p.Addf("%s", tp)
	}
	return p.Err()
}
