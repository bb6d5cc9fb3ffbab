package shard

import (
	"errors"
	"fmt"
	"time"

	"github.com/flotilla-kv/flotilla/placement/tso"
)

// Config configures the shard state machines of a node and its Store. The
// zero value of every field means its default; nothing in this package
// modifies a caller's Config.
//
// Limits and client-table bounds are enforced at apply time, so they are
// part of the replicated state machine: every replica of a cluster must run
// with the same values, or replicas may diverge. Change them only with a
// coordinated, cluster-wide restart.
type Config struct {
	// MaxKeyBytes is the largest accepted user key. Default 4 KiB.
	MaxKeyBytes int64
	// MaxValueBytes is the largest accepted value. Default 1 MiB. Larger
	// values make Raft entries, and snapshots chunks, larger.
	MaxValueBytes int64
	// MaxBatchOps caps the operations of one Batch command. Default 1024.
	MaxBatchOps int

	// MaxClients bounds a shard's client table (exactly-once records): when
	// a new client is recorded in a full table, the record written at the
	// lowest log index is evicted. Default 4096. Each record costs about 80
	// bytes of memory per shard plus its stored result in Pebble.
	MaxClients int
	// ClientTTLEntries expires a client's record once the log has advanced
	// more than this many indexes past the entry that wrote it. Default
	// 100,000. It must exceed the number of entries a shard may apply while
	// a client still retries a request, or a late retry may apply twice.
	ClientTTLEntries uint64

	// SnapshotChunkBytes is the target size of a chunk of user data in a
	// snapshot image (a chunk holds at least one pair). Default 256 KiB.
	SnapshotChunkBytes int64

	// HistoryRetention is how long a key's overwritten versions are kept:
	// a write at revision r removes the versions of its keys that no read
	// at a revision of r minus the retention or later can see (see
	// mvcc.go). Revisions are oracle timestamps, so the span is measured
	// on the oracle's clock. Default 5 minutes.
	HistoryRetention time.Duration

	// TxnRecordRetention is how long the outcome record of a transaction
	// across shards is kept after the transaction's start, on the
	// oracle's clock: past it, a collection (KindGC) may delete the
	// record, and the transaction may prewrite nothing any more (see
	// gc.go). It must exceed by far the longest a transaction's lock may
	// stay unresolved: its TTL, then until the shard's lock sweeper
	// (locksweep.go), a reader or its coordinator settles it. A record
	// costs about the size of its primary key plus 20 bytes on its
	// primary's shard for that long.
	//
	// Default DefaultTxnRecordRetention (an hour): gc.go argues why that
	// is far above the bound the sweeper keeps. A negative value keeps
	// records forever.
	TxnRecordRetention time.Duration
}

// Default values of Config's fields.
const (
	DefaultMaxKeyBytes        = 4 << 10
	DefaultMaxValueBytes      = 1 << 20
	DefaultMaxBatchOps        = 1024
	DefaultMaxClients         = 4096
	DefaultClientTTLEntries   = 100_000
	DefaultSnapshotChunkBytes = 256 << 10
	DefaultHistoryRetention   = 5 * time.Minute
	// DefaultTxnRecordRetention: see Config.TxnRecordRetention and gc.go.
	DefaultTxnRecordRetention = time.Hour
)

// maxSnapshotFrameBytes bounds one frame of a snapshot image; Restore refuses
// larger frames before reading them.
const maxSnapshotFrameBytes = 64 << 20

// withDefaults returns a copy of c with defaults filled in.
func (c Config) withDefaults() Config {
	if c.MaxKeyBytes == 0 {
		c.MaxKeyBytes = DefaultMaxKeyBytes
	}
	if c.MaxValueBytes == 0 {
		c.MaxValueBytes = DefaultMaxValueBytes
	}
	if c.MaxBatchOps == 0 {
		c.MaxBatchOps = DefaultMaxBatchOps
	}
	if c.MaxClients == 0 {
		c.MaxClients = DefaultMaxClients
	}
	if c.ClientTTLEntries == 0 {
		c.ClientTTLEntries = DefaultClientTTLEntries
	}
	if c.SnapshotChunkBytes == 0 {
		c.SnapshotChunkBytes = DefaultSnapshotChunkBytes
	}
	if c.HistoryRetention == 0 {
		c.HistoryRetention = DefaultHistoryRetention
	}
	if c.TxnRecordRetention == 0 {
		c.TxnRecordRetention = DefaultTxnRecordRetention
	}
	return c
}

// retentionRevisions is HistoryRetention as a span of revisions (oracle
// timestamps: milliseconds shifted past the logical bits).
func (c Config) retentionRevisions() uint64 {
	return uint64(c.HistoryRetention.Milliseconds()) << tso.LogicalBits
}

// Validate reports every problem of c at once, after defaults are applied.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.MaxKeyBytes < 1 {
		errs = append(errs, fmt.Errorf("MaxKeyBytes must be positive, got %d", c.MaxKeyBytes))
	}
	if c.MaxValueBytes < 0 {
		errs = append(errs, fmt.Errorf("MaxValueBytes must not be negative, got %d", c.MaxValueBytes))
	}
	if c.MaxBatchOps < 1 {
		errs = append(errs, fmt.Errorf("MaxBatchOps must be positive, got %d", c.MaxBatchOps))
	}
	if c.MaxClients < 1 {
		errs = append(errs, fmt.Errorf("MaxClients must be positive, got %d", c.MaxClients))
	}
	if c.SnapshotChunkBytes < 1 {
		errs = append(errs, fmt.Errorf("SnapshotChunkBytes must be positive, got %d", c.SnapshotChunkBytes))
	}
	if c.HistoryRetention < time.Millisecond || c.HistoryRetention > 30*24*time.Hour {
		errs = append(errs, fmt.Errorf("HistoryRetention must be between 1ms and 30 days, got %s", c.HistoryRetention))
	}
	if c.TxnRecordRetention > 0 && (c.TxnRecordRetention < time.Millisecond || c.TxnRecordRetention > 30*24*time.Hour) {
		errs = append(errs, fmt.Errorf("TxnRecordRetention must be negative (keep forever) or between 1ms and 30 days, got %s", c.TxnRecordRetention))
	}
	// One frame of a snapshot must hold a chunk plus one maximal pair, or
	// the largest client record (a failed CAS returns a whole value).
	if c.MaxKeyBytes > 0 && c.MaxValueBytes >= 0 && c.SnapshotChunkBytes > 0 &&
		2*(c.MaxKeyBytes+c.MaxValueBytes)+c.SnapshotChunkBytes+1024 > maxSnapshotFrameBytes {
		errs = append(errs, fmt.Errorf("SnapshotChunkBytes (%d) + 2*(MaxKeyBytes (%d) + MaxValueBytes (%d)) must stay below %d",
			c.SnapshotChunkBytes, c.MaxKeyBytes, c.MaxValueBytes, maxSnapshotFrameBytes-1024))
	}
	if len(errs) > 0 {
		return fmt.Errorf("shard: invalid config: %w", errors.Join(errs...))
	}
	return nil
}
