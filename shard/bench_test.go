package shard

import (
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/flotilla-kv/flotilla/multiraft"
)

// BenchmarkApplyPut measures Apply of exactly-once Puts of 100-byte values
// from 8 clients, as the engine drives it: many entries into one indexed
// batch, committed every 256 entries. Each iteration also encodes its
// command into a reused buffer (tens of nanoseconds, no allocation).
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
		cmd.Key[1], cmd.Key[2] = byte(i), byte(i>>8)
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
