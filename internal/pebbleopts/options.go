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

// lBaseMaxBytes is the most Lbase holds before Pebble compacts it into the
// level below (Pebble's default: 64 MiB). See Options.
const lBaseMaxBytes = 16 << 20

// Options are the options of a node's Pebble store: logs go to
// logger, the block cache holds cacheBytes (DefaultBlockCacheBytes when 0),
// Lbase holds at most 16 MiB, and the tables of every level carry bloom
// filters.
//
// Why a small Lbase: a write stores a new version of its key instead of
// overwriting it, so a node's data grows with every write (until versions
// older than the shard's HistoryRetention are pruned), and every memtable
// flush makes an L0 table spanning the whole key space (see below). Each
// compaction of L0 therefore rewrites all of Lbase, and with Pebble's
// default Lbase grows to 64 MiB first: BenchmarkNodeWrites (one node's
// share of the bench's write workload, 200,000 writes) compacted 3,500 to
// 3,800 bytes per write, ten times what it flushed, and used 30 to 32 µs
// of CPU per write; with 16 MiB, 1,600 to 1,800 bytes and 21 to 24 µs
// (the data beyond 16 MiB goes one level down, where a compaction
// rewrites only the tables it overlaps). In the profiles of the bench's
// write workload, Pebble's compactions took 13 to 15 µs of the fleet's
// CPU per write with 64 MiB, and 27 µs in a run at 9,100 writes/s, whose
// data grew most; 17 µs in the run beside it with 16 MiB.
//
// What was tried and left: compacting L0 at 8 sublevels as well (instead
// of 4) cut the bytes compacted by another third, but a point read
// (shard's getAt, an iterator seeking with the filters) then merges up to
// twice as many L0 tables: once writes stopped with L0 not yet due for
// compaction, a read cost 40 to 50% more CPU in Pebble
// (BenchmarkPointReads: 6.8 to 7.4 instead of 4.7 to 4.8 µs). Memtables
// of 8 to 32 MiB instead of 4 compacted less too, but inserting into the
// larger skiplist cost more than the compactions saved: memtables of 4 MiB
// stay in the processor's cache, larger ones do not (with 8 MiB and three
// nodes on one machine, memtable inserts went from 16 to 23 µs per write
// in the bench's profile).
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
