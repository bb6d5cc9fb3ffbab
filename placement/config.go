package placement

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"google.golang.org/grpc"

	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/placement/schedule"
)

// Config configures a placement Service. Zero values mean defaults;
// Validate reports every problem at once. New copies it.
type Config struct {
	// ReplicaID is this placementd's ID among the placement replicas (1..3).
	ReplicaID multiraft.NodeID
	// Peers maps every placement replica, this one included, to its address.
	Peers map[multiraft.NodeID]string
	// ReplicationFactor of shards. Default 3.
	ReplicationFactor int
	// InitialShards created at bootstrap. Default 16.
	InitialShards int
	// DownAfter: a node silent that long is down and its replicas are
	// replaced. Default 30 s.
	DownAfter time.Duration
	// SplitSizeBytes: a shard larger than this is split. Default 64 MiB.
	SplitSizeBytes uint64
	// SplitLoad: a shard with more requests per second is split; 0 never.
	SplitLoad float64
	// HeartbeatInterval the nodes use. Default 1 s.
	HeartbeatInterval time.Duration
	// ScheduleInterval between scheduling rounds. Default 1 s.
	ScheduleInterval time.Duration
	// OperatorTimeout bounds one operator's execution; an operator still
	// running then fails. Default 2 min.
	OperatorTimeout time.Duration
	// Dial reaches shardnodes and other placement replicas. Required
	// unless Connect is set.
	Dial func(addr string) (*grpc.ClientConn, error)
	// Logger receives the service's logs. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Connect, if set, replaces Dial: it reaches shardnodes' Admin
	// services and the other placement replicas (see Connector).
	Connect Connector
	// Runtime runs the scheduler's goroutines, waits and timeouts; nil
	// means goroutines on the wall clock (see Runtime).
	Runtime Runtime
}

func (c Config) withDefaults() Config {
	if c.ReplicationFactor == 0 {
		c.ReplicationFactor = 3
	}
	if c.InitialShards == 0 {
		c.InitialShards = 16
	}
	if c.DownAfter == 0 {
		c.DownAfter = 30 * time.Second
	}
	if c.SplitSizeBytes == 0 {
		c.SplitSizeBytes = 64 << 20
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = time.Second
	}
	if c.ScheduleInterval == 0 {
		c.ScheduleInterval = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.OperatorTimeout == 0 {
		c.OperatorTimeout = 2 * time.Minute
	}
	if c.Connect == nil {
		c.Connect = dialConnector{dial: c.Dial}
	}
	if c.Runtime == nil {
		c.Runtime = wallRuntime{}
	}
	return c
}

// Validate reports every problem of c at once, or nil: a missing or
// reserved ReplicaID, Peers that do not name this replica (or name one by
// ID 0 or without an address), negative durations, scheduler settings
// that schedule.Settings.Validate refuses, and neither Dial nor Connect.
// Zero values are not problems: they mean defaults. New calls it.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch {
	case c.ReplicaID == 0:
		bad("ReplicaID is required")
	case uint64(c.ReplicaID) > uint64(multiraft.MaxReplicaID):
		bad("ReplicaID %d is reserved by raft", c.ReplicaID)
	}
	if len(c.Peers) == 0 {
		bad("Peers is required (every placement replica, this one included)")
	} else if _, ok := c.Peers[c.ReplicaID]; !ok && c.ReplicaID != 0 {
		bad("Peers does not name this replica (%d)", c.ReplicaID)
	}
	for _, id := range sortedIDs(c.Peers) {
		switch {
		case id == 0:
			bad("Peers: replica ID 0")
		case uint64(id) > uint64(multiraft.MaxReplicaID):
			bad("Peers: replica ID %d is reserved by raft", id)
		}
		if c.Peers[id] == "" {
			bad("Peers: replica %d has no address", id)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"HeartbeatInterval", c.HeartbeatInterval},
		{"ScheduleInterval", c.ScheduleInterval},
		{"OperatorTimeout", c.OperatorTimeout},
	} {
		if d.v < 0 {
			bad("%s is negative (%s)", d.name, d.v)
		}
	}
	if c.SplitSizeBytes > math.MaxInt64 {
		bad("SplitSizeBytes %d exceeds %d", c.SplitSizeBytes, int64(math.MaxInt64))
	}
	if err := c.scheduleSettings().Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Dial == nil && c.Connect == nil {
		bad("Dial or Connect is required")
	}
	if len(errs) > 0 {
		return fmt.Errorf("placement: invalid config: %w", errors.Join(errs...))
	}
	return nil
}

// scheduleSettings returns the scheduler's settings from c.
func (c Config) scheduleSettings() schedule.Settings {
	return schedule.Settings{
		ReplicationFactor: c.ReplicationFactor, InitialShards: c.InitialShards,
		SplitSizeBytes: int64(c.SplitSizeBytes), SplitLoad: c.SplitLoad, DownAfter: c.DownAfter,
	}
}
