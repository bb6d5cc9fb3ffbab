package shard

import (
	"testing"

	"github.com/cockroachdb/pebble/v2"

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
			if err := batch.Commit(pebble.NoSync); err != nil {
				b.Fatal(err)
			}
			batch.Close()
			batch = h.db.NewIndexedBatch()
			ac.Batch = batch
		}
	}
	b.StopTimer()
	batch.Close()
}
