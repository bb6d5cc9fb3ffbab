// Command placementd runs one replica of Flotilla's placement service: the
// directory of nodes and shards, ID allocation, and the scheduler that
// creates, repairs, balances and splits shards. Run 1 or 3 replicas; they
// replicate their catalogue through Raft and only the leader schedules.
//
// Run `placementd --help` for every flag; each may also be given as an
// environment variable (FLOTILLA_ID for --id, and so on).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/flotilla-kv/flotilla/internal/cli"
	"github.com/flotilla-kv/flotilla/internal/tlsconfig"
	"github.com/flotilla-kv/flotilla/multiraft"
)

const summary = `placementd: a replica of Flotilla's placement service.

Usage: placementd --id N --data-dir DIR [--peers 1=host:port,2=...,3=...] [flags]

With no --peers it runs alone (a 1-replica placement service).`

func main() {
	cfg, err := parseConfig(os.Args[1:])
	if err == flag.ErrHelp {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "placementd: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintf(os.Stderr, "placementd: %v\n", err)
		os.Exit(1)
	}
}

// Config is placementd's configuration.
type Config struct {
	ID        uint64
	Listen    string
	Advertise string
	HTTP      string
	// Pprof serves Go runtime profiles under /debug/pprof/ on HTTP.
	Pprof             bool
	DataDir           string
	Peers             string
	ReplicationFactor int
	InitialShards     int
	DownAfter         time.Duration
	SplitSize         cli.Bytes
	SplitLoad         float64
	HeartbeatInterval time.Duration
	ScheduleInterval  time.Duration
	Tick              time.Duration
	LogFormat         string
	LogLevel          string
	// TLS holds --tls-cert, --tls-key and --tls-ca: all three turn on
	// mutual TLS for every gRPC connection in and out.
	TLS tlsconfig.Files
}

func parseConfig(args []string) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("placementd", flag.ContinueOnError)
	fs.Uint64Var(&c.ID, "id", 1, "this replica's ID among the placement replicas (1, 2 or 3)")
	fs.StringVar(&c.Listen, "listen", "127.0.0.1:7000", "address of the gRPC server (Placement API, Raft, health, reflection)")
	fs.StringVar(&c.Advertise, "advertise", "", "address other placement replicas reach this one at (default: --listen)")
	fs.StringVar(&c.HTTP, "http", "127.0.0.1:7080", "address of the HTTP server: the status page at /, /api/status, /metrics, /healthz and /readyz; empty disables it")
	fs.BoolVar(&c.Pprof, "pprof", false, "serve Go runtime profiles under /debug/pprof/ on the --http address")
	fs.StringVar(&c.DataDir, "data-dir", "", "directory of the catalogue's Pebble store; created if missing (required)")
	fs.StringVar(&c.Peers, "peers", "", "every placement replica as ID=host:port, comma-separated, this one included; empty runs a single replica")
	fs.IntVar(&c.ReplicationFactor, "replication-factor", 3, "replicas per shard")
	fs.IntVar(&c.InitialShards, "initial-shards", 16, "shards created at bootstrap, once replication-factor nodes registered, with split points spread over the key space")
	fs.DurationVar(&c.DownAfter, "down-after", 30*time.Second, "a node silent this long is down: its replicas are replaced elsewhere")
	c.SplitSize = 64 << 20
	fs.Var(&c.SplitSize, "split-size", "a shard larger than this is split")
	fs.Float64Var(&c.SplitLoad, "split-load", 0, "a shard with more writes per second than this is split (0: never split by load)")
	fs.DurationVar(&c.HeartbeatInterval, "heartbeat-interval", time.Second, "the interval at which nodes report (must match the nodes' --heartbeat-interval)")
	fs.DurationVar(&c.ScheduleInterval, "schedule-interval", time.Second, "time between two scheduling rounds of the leader")
	fs.DurationVar(&c.Tick, "tick", 100*time.Millisecond, "duration of one Raft tick of the catalogue group")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	c.TLS.RegisterFlags(fs, "this placement replica, served to nodes, clients and replicas and presented to nodes and replicas (the --http endpoints stay plaintext)")
	cli.VersionFlag(fs, "placementd")
	if err := cli.Parse(fs, args, summary); err != nil {
		return c, err
	}
	if c.Advertise == "" {
		c.Advertise = c.Listen
	}
	return c, c.Validate()
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var p cli.Problems
	if c.ID == 0 {
		p.Addf("--id must be positive")
	}
	if c.DataDir == "" {
		p.Addf("--data-dir is required")
	}
	peers, err := cli.ParsePeers(c.Peers)
	if err != nil {
		p.Addf("--peers: %v", err)
	} else if len(peers) > 0 {
		if _, ok := peers[multiraft.NodeID(c.ID)]; !ok {
			p.Addf("--peers must include this replica (--id %d)", c.ID)
		}
		if len(peers) != 1 && len(peers) != 3 {
			p.Addf("--peers must name 1 or 3 replicas, got %d", len(peers))
		}
	}
	if c.ReplicationFactor < 1 {
		p.Addf("--replication-factor must be at least 1, got %d", c.ReplicationFactor)
	}
	if c.InitialShards < 1 {
		p.Addf("--initial-shards must be at least 1, got %d", c.InitialShards)
	}
	if c.SplitSize <= 0 {
		p.Addf("--split-size must be positive")
	}
	if c.SplitLoad < 0 {
		p.Addf("--split-load must not be negative")
	}
	for name, d := range map[string]time.Duration{"--down-after": c.DownAfter, "--heartbeat-interval": c.HeartbeatInterval, "--schedule-interval": c.ScheduleInterval, "--tick": c.Tick} {
		if d <= 0 {
			p.Addf("%s must be positive, got %s", name, d)
		}
	}
	if c.DownAfter > 0 && c.DownAfter < 3*c.HeartbeatInterval {
		p.Addf("--down-after (%s) must be at least three heartbeat intervals (%s)", c.DownAfter, 3*c.HeartbeatInterval)
	}
	if _, err := cli.NewLogger(os.Stderr, c.LogFormat, c.LogLevel); err != nil {
		p.Addf("%v", err)
	}
	for _, tp := range c.TLS.Problems() {
		p.Addf("%s", tp)
	}
	return p.Err()
}
