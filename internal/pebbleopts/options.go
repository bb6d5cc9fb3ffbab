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

// dataBlockBytes is the size of the tables' data blocks (Pebble's
// default: 4 KiB). See Options.
const dataBlockBytes = 32 << 10

// lBaseMaxBytes is the most Lbase holds before Pebble compacts it into the
// level below (Pebble's default: 64 MiB). See Options.
const lBaseMaxBytes = 16 << 20

// Options are the options of a node's Pebble store: logs go to
// logger, the block cache holds cacheBytes (DefaultBlockCacheBytes when 0),
// Lbase holds at most 16 MiB, the tables' data blocks are of 32 KiB, and
// the tables of every level carry bloom filters.
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
// Why data blocks of 32 KiB (Pebble's default: 4 KiB): since versions, a
// node's CPU per write goes mostly to flushes and compactions rewriting
// the retained versions, and much of that cost is per block, not per
// byte: a table is written through a 4 KiB buffer, so each 4 KiB block
// was one write system call (expensive on the fleet's virtual machines),
// and each block adds an index entry holding a whole key (see Comparer).
// With 32 KiB blocks, BenchmarkNodeWrites (quiet machine) used 13 to 16
// µs of CPU per write instead of 18 to 22, compacting as many bytes; in
// the profiles of the bench's write workload, flushes and compactions
// fell from 23% to 17% of the nodes' CPU (sstable writes from 11% to 7%,
// write system calls from 13% to 10%). Fleet figures, flotilla-bench
// compare --workload write --clients 100 --duration 10s, fresh fleets,
// alternating with 4 KiB blocks, medians of the 10 pairs in which no
// other load ran (other_cpu_cores under 0.1): 9,150 instead of 8,750
// writes/s, 162 instead of 173 µs of server CPU per write; 32 KiB did
// better in 8 of the 10 pairs. A point read that misses the cache reads
// a 32 KiB block, but reads were no worse: the read workload (--workload
// read, 3 quiet pairs) did 34,800 instead of 32,000 reads/s at 40
// instead of 43 µs per read, within its noise, and BenchmarkPointReads
// took 2.3 to 2.6 µs per read with either size. 16 and 64 KiB did as
// well as 32 in BenchmarkNodeWrites.
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
// in the bench's profile). Value separation (Pebble's blob files, which
// needs the newest format major version: a store opened with it is
// ratcheted up and can no longer be opened by older binaries), with the
// Raft log and the other local keys kept in their tables
// (Experimental.SpanPolicyFunc, ValueStorageLowReadLatency) and up to
// 1,000 blob files referenced per table, cut the bytes compacted per
// write (tables and blob files) from 1,650 to 440 in BenchmarkNodeWrites,
// but its CPU per write only to that of 32 KiB blocks alone (14.5 µs),
// and with 32 KiB blocks to 14; in the fleet, with 32 KiB blocks, the one
// quiet pair beside 32 KiB blocks alone showed 9,340 and 9,180 writes/s,
// 163 and 162 µs per write. The columnar tables it requires
// cost more CPU by themselves (25 to 27 µs per write instead of 19 to 22
// in BenchmarkNodeWrites, most of it building value blocks of older
// versions). With only 10 blob files per table, compactions rewrote the
// values into new blob files every second or third compaction of L0.
// With 32 KiB blocks, an Lbase of 8 MiB or no compression at all (the
// bench's values are random) changed BenchmarkNodeWrites by less than
// the noise (13.6 and 14.2 against 13.4 to 13.8 µs per write).
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
		opts.Levels[i].BlockSize = dataBlockBytes
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
//
// Equal is bytes.Equal: Compare finds two keys equal only when their
// prefixes are the same bytes (so Split cut both at the same place) and
// so are their suffixes, that is when the keys are the same bytes. It
// spares every equality check Compare's two Splits and two comparisons
// (calling Compare, Equal was 0.4% of the nodes' samples under the
// bench's write workload).
var Comparer = &pebble.Comparer{
	Compare:              keys.Compare,
	Equal:                bytes.Equal,
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
