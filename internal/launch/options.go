package launch

import (
	"errors"
	"fmt"
	"time"
)

// Options configures a local fleet. Zero fields take the defaults their
// comments give; New and Start never change the caller's Options.
type Options struct {
	// Dir holds every process's data directory (node1, placement, ...)
	// and log (shardnode-1.log, placementd.log, ...), and with TLS the
	// certificates (tls/). Required; created if missing.
	Dir string
	// BinDir holds the shardnode and placementd binaries; empty: next to
	// the running executable, then $PATH (see FindBinary).
	BinDir string
	// Nodes is the number of shardnodes, IDs 1..Nodes. More can be added
	// with Fleet.Add.
	Nodes int
	// PlacementReplicas is the number of placementd replicas: 0 (the
	// shardnodes run alone, shards are made through the Admin service),
	// 1 or 3.
	PlacementReplicas int
	// PlacementAddr, when set and free, is the gRPC address of placement
	// replica 1 (the demo asks for 127.0.0.1:7000, every command's default
	// --placement); when it is taken a free port is used instead.
	PlacementAddr string
	// Shards is placementd's --initial-shards; 0 leaves its default.
	Shards int
	// ReplicationFactor is placementd's --replication-factor; 0 leaves its
	// default (3).
	ReplicationFactor int
	// Peers gives every shardnode --peers (every node's address) also when
	// placement runs; without placement they always get it, as it is
	// then their only way to find each other.
	Peers bool
	// LogLevel is every process's --log-level; empty leaves their default
	// (info).
	LogLevel string
	// NodeArgs and PlacementArgs are extra flags of every shardnode and
	// every placementd replica, after the launcher's own (so they may
	// override them).
	NodeArgs, PlacementArgs []string
	// Etcd gives every shardnode --etcd-listen on a loopback port of its
	// own, so each serves the etcd v3 API there (Node.EtcdAddr), with
	// the fleet's TLS.
	Etcd bool
	// TLS runs the fleet with mutual TLS: a development CA and a
	// certificate per process and for the client, in Dir/tls (the fleet
	// owns that directory: certificates of an earlier fleet are replaced).
	TLS bool
	// ReadyTimeout bounds the wait for each process's /readyz in Start,
	// StartNodes, StartPlacement and Node.Restart. Default 30 s.
	ReadyTimeout time.Duration
	// OwnProcessGroup starts every process in a process group of its own
	// (see Process.OwnProcessGroup).
	OwnProcessGroup bool
}

// DefaultReadyTimeout is Options.ReadyTimeout's default.
const DefaultReadyTimeout = 30 * time.Second

// Validate returns every problem of o at once, or nil.
func (o Options) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf("launch: "+format, args...)) }
	if o.Dir == "" {
		add("Options.Dir is required")
	}
	if o.Nodes < 0 {
		add("Options.Nodes must not be negative, got %d", o.Nodes)
	}
	if o.PlacementReplicas != 0 && o.PlacementReplicas != 1 && o.PlacementReplicas != 3 {
		add("Options.PlacementReplicas must be 0, 1 or 3, got %d", o.PlacementReplicas)
	}
	if o.Shards < 0 || o.ReplicationFactor < 0 {
		add("Options.Shards and ReplicationFactor must not be negative, got %d and %d", o.Shards, o.ReplicationFactor)
	}
	if o.PlacementReplicas == 0 && (o.Shards != 0 || o.ReplicationFactor != 0 || o.PlacementAddr != "" || len(o.PlacementArgs) > 0) {
		add("Options.Shards, ReplicationFactor, PlacementAddr and PlacementArgs need placement (PlacementReplicas > 0)")
	}
	if o.ReadyTimeout < 0 {
		add("Options.ReadyTimeout must not be negative, got %s", o.ReadyTimeout)
	}
	return errors.Join(errs...)
}

// placementArgs returns the flags every placementd replica gets from o,
// before the per-replica ones.
func (o Options) placementArgs() []string {
	var args []string
	if o.Shards > 0 {
		args = append(args, "--initial-shards", fmt.Sprint(o.Shards))
	}
	if o.ReplicationFactor > 0 {
		args = append(args, "--replication-factor", fmt.Sprint(o.ReplicationFactor))
	}
	return append(args, o.PlacementArgs...)
}
