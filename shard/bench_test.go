package shard

import (
	"context"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/flotilla-kv/flotilla/internal/pebbleopts"
	"github.com/flotilla-kv/flotilla/multiraft"
)

// BenchmarkApplyPut measures Apply of exactly-once Puts of 100-byte values
// from 8 clients to 4,096 keys, as the engine drives it: many entries into
// one indexed batch, committed every 256 entries. Revisions are
// timestamps of today's order of magnitude, so every 8th write of a key
// considers pruning (and finds nothing past the 5-minute retention). Each
// iteration also encodes its command into a reused buffer (tens of
// nanoseconds, no allocation).
// benchRevisions is about where revisions are today: 2026 in
// milliseconds, shifted by the oracle's logical bits.
const benchRevisions = uint64(1_790_000_000_000) << 18

func BenchmarkApplyPut(b *testing.B) {
	h := newHarness(b, Config{}, testDesc())
	const perBatch = 256
	batch := h.db.NewIndexedBatch()
	ac := h.ac(batch)
	cmd := Command{Kind: KindPut, Key: []byte("c\x00\x00"), Value: make([]byte, 100)}
	var buf []byte
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		cmd.Header = Header{ClientID: uint64(i%8 + 1), Seq: uint64(i/8 + 1)}
		cmd.Revision = benchRevisions + uint64(i)
		cmd.Key[1], cmd.Key[2] = byte(i), byte(i>>8)&0x0f
		buf = cmd.AppendEncoded(buf[:0])
		if _, ok := h.sm.Apply(ac, multiraft.Entry{Index: uint64(i) + 100, Cmd: buf}).(*Result); !ok {
			b.Fatal("put refused")
		}
		if i%perBatch == perBatch-1 {
			h.sm.FinishApply(ac)
			if err := batch.Commit(pebble.NoSync); err != nil {
				b.Fatal(err)
			}
			batch.Close()
			batch = h.db.NewIndexedBatch()
			ac.Batch = batch
		}
	}
	b.StopTimer()
	h.sm.FinishApply(ac)
	batch.Close()
}

// BenchmarkApplyPutNewKeys measures Apply of Puts to keys the shard never
// held, in a store opened as a node opens it (internal/pebbleopts) whose
// other 100,000 keys, among which the new ones sort, were flushed and
// compacted to the bottom level: each write's meta lookup misses the state
// machine's cache and Pebble's memtables, as a key's first write does.
func BenchmarkApplyPutNewKeys(b *testing.B) {
	opts := pebbleopts.Options(quietLogger{b}, 0)
	opts.FS = vfs.NewMem()
	db, err := pebble.Open("", opts)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	desc := testDesc()
	init := db.NewBatch()
	if err := InitialState(desc)(init); err != nil {
		b.Fatal(err)
	}
	if err := init.Commit(pebble.Sync); err != nil {
		b.Fatal(err)
	}
	sm, err := NewStateMachine(Config{}, desc.ShardID, 1, db)
	if err != nil {
		b.Fatal(err)
	}
	ac := &multiraft.ApplyContext{Batch: db.NewIndexedBatch(), Group: desc.ShardID, Replica: 1}
	cmd := Command{Kind: KindPut, Value: make([]byte, 100)}
	var buf []byte
	index, rev := uint64(100), benchRevisions
	apply := func(key []byte) {
		cmd.Key, cmd.Revision = key, rev
		rev++
		index++
		buf = cmd.AppendEncoded(buf[:0])
		if _, ok := sm.Apply(ac, multiraft.Entry{Index: index, Cmd: buf}).(*Result); !ok {
			b.Fatal("put refused")
		}
		if index%256 == 0 {
			sm.FinishApply(ac)
			if err := ac.Batch.Commit(pebble.NoSync); err != nil {
				b.Fatal(err)
			}
			ac.Batch.Close()
			ac.Batch = db.NewIndexedBatch()
		}
	}
	for i := range 100_000 {
		apply(fmt.Appendf(nil, "c%08d", 2*i))
	}
	sm.FinishApply(ac)
	if err := ac.Batch.Commit(pebble.NoSync); err != nil {
		b.Fatal(err)
	}
	if err := db.Compact(context.Background(), []byte{0}, []byte{0xff}, true); err != nil {
		b.Fatal(err)
	}
	ac.Batch = db.NewIndexedBatch()
	sm.metas = make(map[string]keyMeta)
	keys := make([][]byte, b.N)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "c%08d", 2*(i%100_000)+1) // between two stored keys
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		apply(keys[i])
	}
	b.StopTimer()
	sm.FinishApply(ac)
	ac.Batch.Close()
}
