package schedule

import (
	"errors"
	"fmt"
	"time"
)

// ErrInvalidSettings is wrapped by the error Settings.Validate (and so
// Schedule) returns for settings out of range.
var ErrInvalidSettings = errors.New("schedule: invalid settings")

// Default values of Settings; a zero field means its default.
const (
	DefaultReplicationFactor         = 3
	DefaultInitialShards             = 8
	DefaultSplitSizeBytes            = 64 << 20
	DefaultDownAfter                 = 30 * time.Second
	DefaultMaxSnapshotsPerNode       = 2
	DefaultMaxMovesPerNode           = 4
	DefaultMaxLeaderTransfersPerNode = 64
	DefaultReplicaTolerance          = 1.0
	DefaultLeaderTolerance           = 1.0
	DefaultCapacityTolerance         = 0.05
	DefaultMaxFullness               = 0.95

	// MaxInitialShards bounds InitialShards: bootstrap split points are
	// spread over the first two bytes of the key space.
	MaxInitialShards = 1 << 16
)

// Settings tune the checkers. The zero value of every field means its
// default; negative values are invalid. Schedule never modifies the
// caller's Settings.
type Settings struct {
	// ReplicationFactor is the number of voters every shard should have.
	// Default 3. Odd values tolerate (RF-1)/2 failures.
	ReplicationFactor int
	// InitialShards is how many shards bootstrap creates, with split points
	// spread evenly over the first two key bytes. Default 8, at most
	// MaxInitialShards. More shards spread a young cluster's load at once,
	// at the cost of more Raft groups before there is data.
	InitialShards int
	// SplitSizeBytes: a shard larger than this is split. Default 64 MiB.
	// Smaller shards move and recover faster; more shards cost more groups.
	SplitSizeBytes int64
	// SplitLoad: a shard serving more requests per second than this is
	// split. 0 (the default) disables load-based splitting.
	SplitLoad float64
	// DownAfter is how long a node must be down before its replicas are
	// replaced. Default 30 s. Shorter repairs sooner but moves data for
	// nodes that were only restarting.
	DownAfter time.Duration
	// MaxSnapshotsPerNode bounds the operators in flight that send a
	// snapshot to one node (each AddReplica costs one on its target).
	// Default 2.
	MaxSnapshotsPerNode int
	// MaxMovesPerNode bounds the operators in flight that add or remove a
	// replica on one node (nodes that are down are never charged).
	// Default 4.
	MaxMovesPerNode int
	// MaxLeaderTransfersPerNode bounds the leaderships in flight towards
	// one node (leader balance, drain, and moves of a leader's replica).
	// Default 64. A transfer copies no data: the receiver campaigns once
	// and appends one entry, so tens at once are cheap, and an operator
	// stays in flight until a heartbeat shows the new leader (about a
	// heartbeat interval), which makes this limit the balancing rate: at
	// 8 a fleet of 5,000 shards whose first elections favoured one node
	// took minutes to even out; at 64 it takes seconds. Lower it to make
	// balancing and drains gentler on busy nodes.
	MaxLeaderTransfersPerNode int
	// ReplicaTolerance: replica counts are balanced when every up node is
	// within ReplicaTolerance replicas of the mean. Default 1 (see doc.go,
	// "Balance").
	ReplicaTolerance float64
	// LeaderTolerance: leader counts are balanced when every up node is
	// within LeaderTolerance leaderships of the mean. Default 1.
	LeaderTolerance float64
	// CapacityTolerance: when balancing by bytes, nodes are balanced when
	// every up node's used fraction of its capacity is within
	// CapacityTolerance of the cluster's. Default 0.05 (5 points).
	CapacityTolerance float64
	// MaxFullness: a node whose used bytes (plus the replicas heading its
	// way) would exceed this fraction of its capacity receives no replica.
	// Default 0.95; at most 1.
	MaxFullness float64
}

// withDefaults returns a copy of s with zero fields set to their defaults.
func (s Settings) withDefaults() Settings {
	setInt := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	setFloat := func(v *float64, d float64) {
		if *v == 0 {
			*v = d
		}
	}
	setInt(&s.ReplicationFactor, DefaultReplicationFactor)
	setInt(&s.InitialShards, DefaultInitialShards)
	if s.SplitSizeBytes == 0 {
		s.SplitSizeBytes = DefaultSplitSizeBytes
	}
	if s.DownAfter == 0 {
		s.DownAfter = DefaultDownAfter
	}
	setInt(&s.MaxSnapshotsPerNode, DefaultMaxSnapshotsPerNode)
	setInt(&s.MaxMovesPerNode, DefaultMaxMovesPerNode)
	setInt(&s.MaxLeaderTransfersPerNode, DefaultMaxLeaderTransfersPerNode)
	setFloat(&s.ReplicaTolerance, DefaultReplicaTolerance)
	setFloat(&s.LeaderTolerance, DefaultLeaderTolerance)
	setFloat(&s.CapacityTolerance, DefaultCapacityTolerance)
	setFloat(&s.MaxFullness, DefaultMaxFullness)
	return s
}

// Validate reports every problem with s at once, in an error wrapping
// ErrInvalidSettings, or nil. Zero fields are valid (they mean defaults).
func (s Settings) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidSettings}, args...)...))
	}
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"ReplicationFactor", int64(s.ReplicationFactor)},
		{"InitialShards", int64(s.InitialShards)},
		{"SplitSizeBytes", s.SplitSizeBytes},
		{"DownAfter", int64(s.DownAfter)},
		{"MaxSnapshotsPerNode", int64(s.MaxSnapshotsPerNode)},
		{"MaxMovesPerNode", int64(s.MaxMovesPerNode)},
		{"MaxLeaderTransfersPerNode", int64(s.MaxLeaderTransfersPerNode)},
	} {
		if f.v < 0 {
			bad("%s is negative (%d)", f.name, f.v)
		}
	}
	for _, f := range []struct {
		name string
		v    float64
	}{
		{"SplitLoad", s.SplitLoad},
		{"ReplicaTolerance", s.ReplicaTolerance},
		{"LeaderTolerance", s.LeaderTolerance},
		{"CapacityTolerance", s.CapacityTolerance},
		{"MaxFullness", s.MaxFullness},
	} {
		if f.v < 0 || f.v != f.v {
			bad("%s is negative or NaN (%v)", f.name, f.v)
		}
	}
	if s.InitialShards > MaxInitialShards {
		bad("InitialShards %d exceeds %d", s.InitialShards, MaxInitialShards)
	}
	if s.MaxFullness > 1 {
		bad("MaxFullness %v exceeds 1", s.MaxFullness)
	}
	return errors.Join(errs...)
}
