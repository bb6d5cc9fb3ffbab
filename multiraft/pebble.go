package multiraft

import "github.com/cockroachdb/pebble/v2"

// DefaultMemTableBytes is the memtable size PebbleOptions sets.
const DefaultMemTableBytes = 64 << 20

// PebbleOptions returns o (a new Options when o is nil) tuned for the
// engine's write pattern, for the caller to pass to pebble.Open:
//
//   - A larger memtable (DefaultMemTableBytes instead of Pebble's 4 MiB).
//     Every proposal is written twice, once as a log entry and once by
//     apply, and the log entry is deleted again when the log is truncated,
//     usually a few thousand entries later. A memtable that outlives that
//     window lets a flush drop the entry under the truncation's range
//     deletion instead of writing it to L0 and compacting it away later:
//     on a write-heavy node, flushes and compactions of dead log entries
//     were the largest part of Pebble's background CPU.
//
// Memory: up to two memtables per node (the one being filled and the one
// being flushed), so 128 MiB at most, touched only as it fills.
func PebbleOptions(o *pebble.Options) *pebble.Options {
	if o == nil {
		o = &pebble.Options{}
	}
	o.MemTableSize = DefaultMemTableBytes
	return o
}
