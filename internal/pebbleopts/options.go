package pebbleopts

import (
	"bytes"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"

	"github.com/flotilla-kv/flotilla/internal/keys"
)

// DefaultBlockCacheBytes is the size of a node's Pebble block cache unless
// its operator says otherwise.
const DefaultBlockCacheBytes = 64 << 20

// bloomBitsPerKey sizes the tables' bloom filters: 10 bits a key gives
// about 1% false positives.
const bloomBitsPerKey = 10

// The shape of the LSM (see Options): L0 is compacted into Lbase once it
// holds l0CompactionThreshold sublevels (Pebble's default: 4), writes stop
// at l0StopWritesThreshold (Pebble's: 12, the same ratio), and Lbase holds
// lBaseMaxBytes (Pebble's: 64 MiB).
const (
	l0CompactionThreshold = 8
	l0StopWritesThreshold = 24
	lBaseMaxBytes         = 16 << 20
)

// Options are the options of a node's Pebble store: logs go to
// logger, the block cache holds cacheBytes (DefaultBlockCacheBytes when 0),
// L0 is compacted at 8 sublevels into an Lbase of at most 16 MiB, and the
// tables of every level carry bloom filters.
//
// Why compact L0 later and keep Lbase small: a write stores a new version
// of its key instead of overwriting it, so a node's data grows with every
// write (until versions older than the shard's HistoryRetention are
// pruned), and every memtable flush makes an L0 table spanning the whole
// key space (see below). Each compaction of L0 therefore rewrites all of
// Lbase. With Pebble's defaults that happened every four flushes into an
// Lbase of up to 64 MiB: BenchmarkNodeWrites (one node's share of the
// bench's write workload) compacted about 3,400 bytes per write, ten
// times what it flushed, at 200,000 writes (1,400 at 80,000, about a
// bench run's), and Pebble's compactions took 13 to 15 µs of the fleet's
// CPU per write in the profiles of the bench's write workload (of about
// 145 µs the profiles saw). With 8 sublevels and 16 MiB, BenchmarkNodeWrites
// compacts about a third of that (1,130 and 430 bytes), and compactions
// took 4 to 9 µs per write in the same profiles. The price is
// read amplification: up to twice as many L0 tables for an iterator to
// merge (point reads skip them with the filters; a scan, or the prune of
// a key's versions, which seeks without them, does not) and one more
// level below once the data outgrows 16 MiB. A larger memtable (16 or 32
// MiB) compacted even less, but inserting into the larger skiplist cost
// more than the compactions it saved: memtables of 4 MiB stay in the
// processor's cache, larger ones do not (with 8 MiB and three nodes on
// one machine, memtable inserts went from 16 to 23 µs per write in the
// bench's profile).
//
// Why filters on every level, L0 included (Pebble's default has none): a
// node's writes are log entries, applied keys and client records of every
// shard, so each memtable flush makes an L0 table spanning nearly the whole
// key space, and with the default 4 MiB memtable a busy node flushes
// several a second. A point read (KV.Get) must look into every L0 table,
// reading and decompressing its index block, and most of those tables were
// just written and are not in the cache. In the bench's mixed workload (100
// clients, half reads) that was 12% of the nodes' CPU; with filters and the
// 64 MiB cache it is 5%, and the workload's server CPU per operation fell
// 11%, from 99 to 88 µs (medians of 3 runs of flotilla bench compare,
// alternating with Pebble's default options). Writes pay for building the
// filters in flushes and compactions; the write workload showed no
// difference beyond the noise.
func Options(logger pebble.Logger, cacheBytes int64) *pebble.Options {
	if cacheBytes <= 0 {
		cacheBytes = DefaultBlockCacheBytes
	}
	opts := &pebble.Options{
		Logger: logger, CacheSize: cacheBytes, Comparer: Comparer,
		L0CompactionThreshold: l0CompactionThreshold, L0StopWritesThreshold: l0StopWritesThreshold,
		LBaseMaxBytes: lBaseMaxBytes,
	}
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(bloomBitsPerKey)
	}
	return opts
}

// Comparer orders a node's keys as internal/keys lays them out: the local
// half bytewise, the versions of a user key together and newest first
// (keys.Compare), with the revision cut off for bloom filters
// (keys.Split). Every Pebble that holds shards' data, a test's included,
// is opened with it (the engine's own tests, whose toy state machines keep
// one version per key, need not be); Pebble records its name and refuses
// to open a store written with another comparer, such as a data directory
// from before versions.
//
// Separator and Successor, which Pebble uses to shorten the keys of its
// index blocks, return their first argument unchanged: a shortened key of
// the user half could read as a different user key and revision. The cost
// is index blocks holding whole keys.
var Comparer = &pebble.Comparer{
	Compare:              keys.Compare,
	Equal:                func(a, b []byte) bool { return keys.Compare(a, b) == 0 },
	Split:                keys.Split,
	ComparePointSuffixes: bytes.Compare,
	CompareRangeSuffixes: bytes.Compare,
	AbbreviatedKey: func(k []byte) uint64 {
		return pebble.DefaultComparer.AbbreviatedKey(k[:keys.Split(k)])
	},
	Separator:          func(dst, a, _ []byte) []byte { return append(dst, a...) },
	Successor:          func(dst, a []byte) []byte { return append(dst, a...) },
	ImmediateSuccessor: keys.ImmediateSuccessor,
	FormatKey:          func(k []byte) fmt.Formatter { return keys.FormatKey(k) },
	Name:               "flotilla.mvcc.v1",
}
