package multiraft

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Config configures an Engine. The zero value of every tuning field means
// its default; Open never modifies the caller's Config.
type Config struct {
	// NodeID is this node's ID. Required, non-zero.
	NodeID NodeID
	// DB is the node's one Pebble instance, shared by every group. Required.
	// The engine does not close it.
	DB *pebble.DB
	// Transport carries messages to other nodes. Required.
	Transport Transport
	// NewStateMachine builds a group's state machine. Required.
	NewStateMachine NewStateMachineFunc
	// Logger receives the engine's logs. Default: slog.Default().
	Logger *slog.Logger

	// Workers is the number of goroutines that process groups. Zero means
	// runtime.GOMAXPROCS(0)*2. A negative value starts none: the caller
	// drives the engine with Process, which is how the deterministic
	// simulator runs it.
	Workers int
	// MaxGroupsPerRound caps how many groups one worker round handles (and
	// so how many Readys share one sync). Default 256.
	MaxGroupsPerRound int

	// ElectionTicks is the Raft election timeout in ticks. Default 10.
	ElectionTicks int
	// HeartbeatTicks is the Raft heartbeat interval in ticks. Default 1.
	HeartbeatTicks int
	// QuiesceAfterTicks is how many idle ticks a leader with caught-up
	// followers waits before it stops ticking its group. Default 3.
	// Negative disables quiescence.
	QuiesceAfterTicks int

	// MaxSizePerMsgBytes caps the entries in one append message. Default 1 MiB.
	MaxSizePerMsgBytes uint64
	// MaxInflightMsgs caps append messages in flight to one follower. Default 256.
	MaxInflightMsgs int
	// MaxUncommittedBytes caps the uncommitted log of a leader; proposals
	// beyond it are dropped. Default 64 MiB.
	MaxUncommittedBytes uint64

	// EntryCacheBytes bounds the per-group cache of recent log entries that
	// spares the leader reading its log from Pebble. Default 256 KiB.
	EntryCacheBytes int64

	// LogTruncateEntries and LogTruncateBytes: once a group's log holds more
	// than either, it is truncated up to its durable applied index (leaving
	// entries still needed by followers unless the bytes bound is exceeded).
	// Defaults 200 entries and 16 MiB. A short log is cheap: entries
	// truncated before their memtable is flushed never reach an sstable,
	// so Pebble neither flushes nor compacts them: with 1,000 entries a
	// busy group's entries outlived Pebble's 4 MiB memtable (figures in
	// bench/README.md, "Figures behind the engine's choices"). The price:
	// a leader truncates past a
	// follower's match only when the log exceeds LogTruncateBytes, so a
	// follower lagging further than that needs a snapshot.
	LogTruncateEntries uint64
	LogTruncateBytes   int64

	// LeaseTicks is how long, in ticks, a leader may serve lease reads after
	// a quorum confirmed its leadership. It must be less than ElectionTicks;
	// default ElectionTicks-2. The margin covers tick skew between nodes.
	LeaseTicks int

	// TickInterval is the real duration of a tick. When it is set (RunTicker
	// sets it to its interval if it is zero), a lease also ends
	// LeaseTicks*TickInterval after its ReadIndex round started, measured
	// on Clock, whichever comes first. Ticks alone are not enough: a leader
	// whose process was paused (SIGSTOP, a VM stall, a long GC) misses the
	// ticks of the pause, since a ticker drops what its reader cannot take,
	// and would resume believing its lease still runs while the others have
	// elected a new leader. Zero (manual mode, the simulator): ticks only.
	TickInterval time.Duration
	// Clock reads the monotonic clock leases are checked against. Default
	// time.Now; tests inject their own.
	Clock func() time.Time
}

// Default values of Config's tuning fields.
const (
	DefaultMaxGroupsPerRound   = 256
	DefaultElectionTicks       = 10
	DefaultHeartbeatTicks      = 1
	DefaultQuiesceAfterTicks   = 3
	DefaultMaxSizePerMsgBytes  = 1 << 20
	DefaultMaxInflightMsgs     = 256
	DefaultMaxUncommittedBytes = 64 << 20
	DefaultEntryCacheBytes     = 256 << 10
	DefaultLogTruncateEntries  = 200
	DefaultLogTruncateBytes    = 16 << 20
)

// withDefaults returns a copy of c with defaults filled in.
func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.MaxGroupsPerRound == 0 {
		c.MaxGroupsPerRound = DefaultMaxGroupsPerRound
	}
	if c.ElectionTicks == 0 {
		c.ElectionTicks = DefaultElectionTicks
	}
	if c.HeartbeatTicks == 0 {
		c.HeartbeatTicks = DefaultHeartbeatTicks
	}
	if c.QuiesceAfterTicks == 0 {
		c.QuiesceAfterTicks = DefaultQuiesceAfterTicks
	}
	if c.MaxSizePerMsgBytes == 0 {
		c.MaxSizePerMsgBytes = DefaultMaxSizePerMsgBytes
	}
	if c.MaxInflightMsgs == 0 {
		c.MaxInflightMsgs = DefaultMaxInflightMsgs
	}
	if c.MaxUncommittedBytes == 0 {
		c.MaxUncommittedBytes = DefaultMaxUncommittedBytes
	}
	if c.EntryCacheBytes == 0 {
		c.EntryCacheBytes = DefaultEntryCacheBytes
	}
	if c.LogTruncateEntries == 0 {
		c.LogTruncateEntries = DefaultLogTruncateEntries
	}
	if c.LogTruncateBytes == 0 {
		c.LogTruncateBytes = DefaultLogTruncateBytes
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.LeaseTicks == 0 {
		c.LeaseTicks = c.ElectionTicks - 2
	}
	return c
}

// Validate reports every problem of c at once, after defaults are applied.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.NodeID == 0 {
		errs = append(errs, errors.New("NodeID must be non-zero"))
	}
	if c.DB == nil {
		errs = append(errs, errors.New("DB is required"))
	}
	if c.Transport == nil {
		errs = append(errs, errors.New("Transport is required"))
	}
	if c.NewStateMachine == nil {
		errs = append(errs, errors.New("NewStateMachine is required"))
	}
	if c.HeartbeatTicks < 1 {
		errs = append(errs, fmt.Errorf("HeartbeatTicks must be at least 1, got %d", c.HeartbeatTicks))
	}
	if c.ElectionTicks <= c.HeartbeatTicks {
		errs = append(errs, fmt.Errorf("ElectionTicks (%d) must exceed HeartbeatTicks (%d)", c.ElectionTicks, c.HeartbeatTicks))
	}
	if c.LeaseTicks < 0 || c.LeaseTicks >= c.ElectionTicks {
		errs = append(errs, fmt.Errorf("LeaseTicks (%d) must be in [0, ElectionTicks=%d)", c.LeaseTicks, c.ElectionTicks))
	}
	if c.TickInterval < 0 {
		errs = append(errs, fmt.Errorf("TickInterval must not be negative, got %s", c.TickInterval))
	}
	if c.MaxGroupsPerRound < 1 {
		errs = append(errs, fmt.Errorf("MaxGroupsPerRound must be positive, got %d", c.MaxGroupsPerRound))
	}
	if c.EntryCacheBytes < 0 || c.LogTruncateBytes < 0 {
		errs = append(errs, errors.New("EntryCacheBytes and LogTruncateBytes must not be negative"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("multiraft: invalid config: %w", errors.Join(errs...))
	}
	return nil
}
