package pebbleopts

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/sstable"

	"github.com/flotilla-kv/flotilla/internal/keys"
)

// nodeWrites models what a shardnode writes into its Pebble for b.N client
// writes, in the shape of the bench's write workload (10,000 keys of 16
// bytes, 256-byte values, 16 shards, rounds of 16 writes): per write a log
// entry, then, at apply, the key's new version, its meta, the client record
// and the group's applied state; every 200 entries a group's log is
// truncated with a range deletion, as multiraft does. Each round is one
// synced batch. Without writeMeta it leaves the meta out, as a layout
// keeping a key's current state in its newest version would. It reports
// the process's CPU time per write (user and system, Pebble's flushes and
// compactions included, from getrusage) and the bytes Pebble flushed and
// compacted per write, into tables and blob files.
func nodeWrites(b *testing.B, opts *pebble.Options, writeMeta bool) {
	const (
		shards        = 16
		userKeys      = 10_000
		roundWrites   = 16
		truncateEvery = 200
	)
	db, err := pebble.Open(b.TempDir(), opts)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	value := make([]byte, 256)
	entry := make([]byte, 350)
	for i := range entry {
		entry[i] = byte(rng.Uint32())
	}
	userKey := func(i int) []byte { return fmt.Appendf(nil, "%08x%08d", uint32(i)*2654435761, i)[:16] }
	logIndex := make([]uint64, shards)
	truncated := make([]uint64, shards)
	versions := make([]uint64, userKeys)
	var kbuf, mbuf, vbuf []byte
	rev := uint64(time.Now().UnixMilli()) << 18
	before := cpuTime()
	b.ResetTimer()
	for done := 0; done < b.N; done += roundWrites {
		batch := db.NewBatch()
		for range roundWrites {
			g := rng.IntN(shards)
			k := rng.IntN(userKeys)
			logIndex[g]++
			for i := range value {
				value[i] = byte(rng.Uint32())
			}
			_ = batch.Set(keys.RaftLogKey(uint64(g), logIndex[g]), entry, nil)
			rev++
			versions[k]++
			kbuf = keys.AppendMVCCKey(kbuf[:0], userKey(k), rev)
			vbuf = binary.AppendUvarint(append(vbuf[:0], 1), rev)
			vbuf = binary.AppendUvarint(vbuf, versions[k])
			vbuf = append(binary.AppendUvarint(vbuf, 0), value...)
			_ = batch.Set(kbuf, vbuf, nil)
			if writeMeta {
				mbuf = keys.AppendMVCCPrefix(mbuf[:0], userKey(k))
				_ = batch.Set(mbuf, vbuf[:12], nil)
			}
			_ = batch.Set(keys.ShardClientKey(uint64(g), uint64(k%100)), entry[:40], nil)
			_ = batch.Set(keys.RaftKey(uint64(g), keys.RaftAppliedState), entry[:60], nil)
			if logIndex[g]-truncated[g] >= truncateEvery {
				_ = batch.DeleteRange(keys.RaftLogKey(uint64(g), truncated[g]+1), keys.RaftLogKey(uint64(g), logIndex[g]-10), nil)
				truncated[g] = logIndex[g] - 11
			}
		}
		if err := batch.Commit(pebble.Sync); err != nil {
			b.Fatal(err)
		}
		_ = batch.Close()
	}
	b.StopTimer()
	cpu := cpuTime() - before
	m := db.Metrics()
	var flushed, compacted uint64
	for _, l := range m.Levels {
		compacted += l.TableBytesCompacted + l.BlobBytesCompacted
		flushed += l.TableBytesFlushed + l.BlobBytesFlushed
	}
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/write")
	b.ReportMetric(float64(flushed)/float64(b.N), "flushed-B/write")
	b.ReportMetric(float64(compacted)/float64(b.N), "compacted-B/write")
}

// cpuTime is the CPU time the process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// nodeVariants are the options BenchmarkNodeWrites and BenchmarkPointReads
// compare: Options itself, and Options with one change each, of those
// tried (see Options for what each did).
var nodeVariants = []struct {
	name  string
	apply func(*pebble.Options)
}{
	{"flotilla", func(*pebble.Options) {}},
	{"block=pebble", func(o *pebble.Options) { setBlockSize(o, 0) }},
	{"block=16KiB", func(o *pebble.Options) { setBlockSize(o, 16<<10) }},
	{"lbase=pebble", func(o *pebble.Options) { o.LBaseMaxBytes = 0 }},
	{"lbase=8MiB", func(o *pebble.Options) { o.LBaseMaxBytes = 8 << 20 }},
	{"compression=none", func(o *pebble.Options) {
		for i := range o.Levels {
			o.Levels[i].Compression = func() *sstable.CompressionProfile { return sstable.NoCompression }
		}
	}},
	{"columnar", func(o *pebble.Options) { o.FormatMajorVersion = pebble.FormatNewest }},
	{"columnar,valueblocks=off", func(o *pebble.Options) {
		o.FormatMajorVersion = pebble.FormatNewest
		o.Experimental.SpanPolicyFunc = func([]byte) (pebble.SpanPolicy, []byte, error) {
			return pebble.SpanPolicy{DisableValueSeparationBySuffix: true}, nil, nil
		}
	}},
	{"valsep=all,depth=10", func(o *pebble.Options) { separateValues(o, 10, false) }},
	{"valsep=user,depth=10", func(o *pebble.Options) { separateValues(o, 10, true) }},
	{"valsep=user,depth=1000", func(o *pebble.Options) { separateValues(o, 1000, true) }},
}

// setBlockSize sets the size of the data blocks of every level's tables
// (0: Pebble's default).
func setBlockSize(o *pebble.Options, bytes int) {
	for i := range o.Levels {
		o.Levels[i].BlockSize = bytes
	}
}

// separateValues turns on Pebble's value separation: values of 64 bytes
// or more go to blob files, and a table may reference up to depth
// overlapping blob files before a compaction rewrites its values. With
// userOnly, values of the local half (Raft log entries above all, deleted
// within a second) stay in their tables.
func separateValues(o *pebble.Options, depth int, userOnly bool) {
	o.FormatMajorVersion = pebble.FormatNewest
	o.Experimental.EnableColumnarBlocks = func() bool { return true }
	o.Experimental.ValueSeparationPolicy = func() pebble.ValueSeparationPolicy {
		return pebble.ValueSeparationPolicy{
			Enabled: true, MinimumSize: 64, MaxBlobReferenceDepth: depth,
			RewriteMinimumAge: 5 * time.Minute, TargetGarbageRatio: 0.3,
		}
	}
	if userOnly {
		userStart, _ := keys.UserSpan(nil, nil)
		o.Experimental.SpanPolicyFunc = func(start []byte) (pebble.SpanPolicy, []byte, error) {
			if keys.Compare(start, userStart) < 0 {
				return pebble.SpanPolicy{ValueStoragePolicy: pebble.ValueStorageLowReadLatency}, userStart, nil
			}
			return pebble.SpanPolicy{}, nil, nil
		}
	}
}

// BenchmarkNodeWrites: nodeWrites with each of nodeVariants, and with
// Options but no meta records (meta=off: what dropping them from the
// layout would save). Run it with a fixed count (-benchtime 200000x): the
// cost of compactions grows with the data, so figures of different b.N do
// not compare.
func BenchmarkNodeWrites(b *testing.B) {
	for _, v := range nodeVariants {
		b.Run(v.name, func(b *testing.B) {
			opts := Options(quietLogger{}, 0)
			v.apply(opts)
			nodeWrites(b, opts, true)
		})
	}
	b.Run("meta=off", func(b *testing.B) { nodeWrites(b, Options(quietLogger{}, 0), false) })
}

// pointReads writes 60,000 versions of 10,000 keys with opts (and a meta
// and a log entry beside each), lets Pebble's compactions finish, then
// reads random keys' newest versions as shard's getAt does (an iterator,
// SeekPrefixGE, the value), reporting the CPU time per read and the L0 sublevels the
// reads had to merge.
func pointReads(b *testing.B, opts *pebble.Options) {
	const userKeys, writes = 10_000, 60_000
	db, err := pebble.Open(b.TempDir(), opts)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	userKey := func(i int) []byte { return fmt.Appendf(nil, "%08x%08d", uint32(i)*2654435761, i)[:16] }
	value := make([]byte, 256)
	for i := range writes {
		k := userKey(i % userKeys)
		batch := db.NewBatch()
		_ = batch.Set(keys.MVCCKey(k, uint64(i+1)), value, nil)
		_ = batch.Set(keys.AppendMVCCPrefix(nil, k), value[:12], nil)
		_ = batch.Set(keys.RaftLogKey(uint64(i%16), uint64(i)), value, nil)
		if err := batch.Commit(pebble.NoSync); err != nil {
			b.Fatal(err)
		}
	}
	// Pebble has no call that waits for its background work: poll.
	for m := db.Metrics(); m.Compact.NumInProgress > 0 || m.Flush.NumInProgress > 0; m = db.Metrics() {
		time.Sleep(10 * time.Millisecond)
	}
	sublevels := db.Metrics().Levels[0].Sublevels
	rng := rand.New(rand.NewPCG(3, 4))
	var seek []byte
	before := cpuTime()
	b.ResetTimer()
	for range b.N {
		seek = keys.AppendMVCCKey(seek[:0], userKey(rng.IntN(userKeys)), keys.MaxRevision)
		it, err := db.NewIter(nil)
		if err != nil {
			b.Fatal(err)
		}
		if !it.SeekPrefixGE(seek) {
			b.Fatalf("no version of %s", keys.FormatKey(seek))
		}
		if _, err := it.ValueAndErr(); err != nil {
			b.Fatal(err)
		}
		if err := it.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-before).Nanoseconds())/float64(b.N), "cpu-ns/read")
	b.ReportMetric(float64(sublevels), "L0-sublevels")
}

// BenchmarkPointReads: pointReads with Options, with L0 compacted at 8
// sublevels instead of Pebble's 4 (which Options keeps; see there), and
// with those of nodeVariants that change how a read finds its value.
func BenchmarkPointReads(b *testing.B) {
	b.Run("l0=8", func(b *testing.B) {
		opts := Options(quietLogger{}, 0)
		opts.L0CompactionThreshold, opts.L0StopWritesThreshold = 8, 24
		pointReads(b, opts)
	})
	for _, v := range nodeVariants {
		if v.name != "flotilla" && !strings.HasPrefix(v.name, "block=") && !strings.HasPrefix(v.name, "valsep=user") {
			continue
		}
		b.Run(v.name, func(b *testing.B) {
			opts := Options(quietLogger{}, 0)
			v.apply(opts)
			pointReads(b, opts)
		})
	}
}

// quietLogger drops Pebble's informational logs, which would interleave
// with the benchmark's output, and fails on its errors.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any) {}

func (quietLogger) Errorf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }

func (quietLogger) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }
