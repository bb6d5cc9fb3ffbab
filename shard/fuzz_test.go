package shard

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/flotilla-kv/flotilla/multiraft"
)

// FuzzCommandRoundTrip builds a well-formed command of every kind from
// fuzzed fields: it encodes (after any prefix), decodes to the same
// command, and the encoding is canonical (re-encoding gives the same
// bytes). FuzzDecodeCommand covers the other direction (arbitrary bytes).
func FuzzCommandRoundTrip(f *testing.F) {
	f.Add(uint8(KindPut), uint64(1), uint64(2), uint64(3), uint64(4), []byte("k"), []byte("v"), []byte("e"), false, uint8(0), uint64(0))
	f.Add(uint8(KindCompareAndSwap), uint64(0), uint64(0), uint64(0), uint64(0), []byte("k"), []byte{}, []byte{}, true, uint8(0), uint64(0))
	f.Add(uint8(KindBatch), uint64(1<<63), uint64(1), uint64(0), uint64(1<<40), []byte("a"), []byte("b"), []byte("c"), false, uint8(5), uint64(0))
	f.Add(uint8(KindSplit), uint64(9), uint64(9), uint64(1), uint64(1), []byte("m"), []byte{}, []byte{}, false, uint8(3), uint64(77))
	f.Add(uint8(KindChecksum), uint64(0), uint64(0), uint64(0), uint64(0), []byte{}, []byte{}, []byte{}, false, uint8(0), uint64(0))
	f.Fuzz(func(t *testing.T, kind uint8, client, seq, confVer, version uint64, key, value, expected []byte,
		absent bool, n uint8, newShard uint64) {
		c := Command{Kind: CommandKind(kind%uint8(KindChecksum+1-KindPut)) + KindPut,
			Header: Header{ClientID: client, Seq: seq, Epoch: Epoch{ConfVer: confVer, Version: version}}}
		switch c.Kind {
		case KindPut:
			c.Key, c.Value = key, value
		case KindDelete:
			c.Key = key
		case KindCompareAndSwap:
			c.Key, c.Value, c.ExpectAbsent = key, value, absent
			if !absent {
				c.Expected = expected
			}
		case KindBatch:
			for i := range int(n%16) + 1 {
				op := Op{Key: append(bytes.Clone(key), byte(i)), Delete: (int(n)+i)%3 == 0}
				if !op.Delete {
					op.Value = append(bytes.Clone(value), expected...)
				}
				c.Ops = append(c.Ops, op)
			}
		case KindSplit:
			c.Key, c.NewShard = key, ShardID(newShard)
			for i := range int(n % 8) {
				c.NewReplicas = append(c.NewReplicas, SplitReplica{Old: multiraft.ReplicaID(client + uint64(i)), New: multiraft.ReplicaID(seq ^ uint64(i))})
			}
		}
		enc := c.AppendEncoded([]byte("prefix"))[len("prefix"):]
		var got Command
		if err := DecodeCommand(enc, &got); err != nil {
			t.Fatalf("%+v encodes to %x, which does not decode: %v", c, enc, err)
		}
		if !reflect.DeepEqual(normalize(got), normalize(c)) {
			t.Fatalf("round trip changed %+v into %+v", c, got)
		}
		if again := got.AppendEncoded(nil); !bytes.Equal(again, enc) {
			t.Fatalf("re-encoding is not canonical: %x then %x", enc, again)
		}
		// Any strict prefix of an encoding is refused, never misread.
		if len(enc) > 0 {
			cut := enc[:int(n)%len(enc)]
			if err := DecodeCommand(cut, &got); err == nil {
				t.Fatalf("truncated encoding %x (of %x) decoded as %+v", cut, enc, got)
			} else if !errors.Is(err, ErrBadCommand) {
				t.Fatalf("truncated encoding: error %v does not wrap ErrBadCommand", err)
			}
		}
	})
}

// FuzzRestoreCorruptByte: a valid snapshot image with one byte changed,
// or cut short, is refused with ErrCorruptSnapshot; the batch stays empty
// and the target's committed state is exactly what it was.
func FuzzRestoreCorruptByte(f *testing.F) {
	cfg := Config{SnapshotChunkBytes: 64}
	_, img := snapshotSource(f, cfg)
	f.Add(uint32(0), byte(1), false)
	f.Add(uint32(len(img)/2), byte(0x80), false)
	f.Add(uint32(len(img)-1), byte(0xff), false)
	f.Add(uint32(len(img)-5), byte(0), true)
	f.Add(uint32(5), byte(0), true)
	// One target for the whole run: it is never changed by a refused image.
	db, b, err := restoreInto(f, cfg, nil)
	if err == nil {
		f.Fatal("an empty image was accepted")
	}
	b.Close()
	desc := testDesc()
	desc.End = nil // the target's stale descriptor is wider: cover all of it
	before := shardState(f, db, &desc)
	sm, err := NewStateMachine(cfg, 1, 2, db)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, pos uint32, mask byte, truncate bool) {
		data := bytes.Clone(img)
		i := int(pos % uint32(len(data)))
		if truncate {
			data = data[:i]
		} else {
			if mask == 0 {
				mask = 1
			}
			data[i] ^= mask
		}
		b := db.NewBatch()
		defer b.Close()
		err := sm.Restore(b, bytes.NewReader(data))
		if err == nil {
			t.Fatalf("image with byte %d changed (truncate=%v, mask %#x) was accepted", i, truncate, mask)
		}
		if !errors.Is(err, ErrCorruptSnapshot) {
			t.Fatalf("error %v does not wrap ErrCorruptSnapshot", err)
		}
		if !b.Empty() {
			t.Fatal("refused image wrote into the batch")
		}
		if after := shardState(t, db, &desc); after != before {
			t.Fatalf("refused image changed the target's state")
		}
	})
}

// FuzzDescriptorRanges: containment and split arithmetic of descriptors.
// A key is in a descriptor iff it is in exactly one half of any valid
// split of it; a split is valid only strictly inside the range; a range is
// contained iff both its ends are; encoding round-trips.
func FuzzDescriptorRanges(f *testing.F) {
	f.Add([]byte("b"), []byte("m"), []byte("c"), []byte("d"), []byte("e"))
	f.Add([]byte{}, []byte{}, []byte{}, []byte("x"), []byte{})
	f.Add([]byte("b"), []byte("m"), []byte("b"), []byte("m"), []byte("m"))
	f.Add([]byte("a"), []byte("a\x00"), []byte("a"), []byte("a\x00"), []byte("a\x00"))
	f.Fuzz(func(t *testing.T, start, end, key, split, rangeEnd []byte) {
		d := Descriptor{ShardID: 1, Start: start, End: end, Epoch: Epoch{ConfVer: 1, Version: 1},
			Replicas: []multiraft.Replica{{ReplicaID: 1, NodeID: 1}, {ReplicaID: 2, NodeID: 2}}}
		if d.Validate() != nil {
			if len(end) == 0 || bytes.Compare(start, end) < 0 {
				t.Fatalf("valid range [%x, %x) refused: %v", start, end, d.Validate())
			}
			return
		}
		contains := d.ContainsKey(key)
		if want := bytes.Compare(key, start) >= 0 && (len(end) == 0 || bytes.Compare(key, end) < 0); contains != want {
			t.Fatalf("ContainsKey(%x) in [%x, %x) = %v", key, start, end, contains)
		}
		if !d.ContainsRange(d.Start, d.End) {
			t.Fatalf("[%x, %x) does not contain itself", start, end)
		}
		// A range [key, rangeEnd) is contained iff its start is in d and its
		// end is at most d's end (an empty end is +inf).
		wantRange := bytes.Compare(key, start) >= 0 &&
			(len(end) == 0 || (len(rangeEnd) != 0 && bytes.Compare(rangeEnd, end) <= 0))
		if got := d.ContainsRange(key, rangeEnd); got != wantRange {
			t.Fatalf("ContainsRange(%x, %x) in [%x, %x) = %v, want %v", key, rangeEnd, start, end, got, wantRange)
		}
		// Split.
		c := Command{Kind: KindSplit, Key: split, NewShard: 2,
			NewReplicas: []SplitReplica{{Old: 1, New: 11}, {Old: 2, New: 12}}}
		err := c.checkSplit(&d)
		strictlyInside := bytes.Compare(split, start) > 0 && (len(end) == 0 || bytes.Compare(split, end) < 0)
		if (err == nil) != strictlyInside {
			t.Fatalf("split of [%x, %x) at %x: err %v, strictly inside %v", start, end, split, err, strictlyInside)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidSplit) {
				t.Fatalf("split error %v does not wrap ErrInvalidSplit", err)
			}
		} else {
			left := Descriptor{ShardID: 1, Start: start, End: split}
			right := Descriptor{ShardID: 2, Start: split, End: end}
			if left.Validate() != nil || right.Validate() != nil {
				t.Fatalf("halves of a valid split are invalid: %v, %v", left.Validate(), right.Validate())
			}
			inL, inR := left.ContainsKey(key), right.ContainsKey(key)
			if inL && inR || (inL || inR) != contains {
				t.Fatalf("key %x: in parent %v, left %v, right %v", key, contains, inL, inR)
			}
		}
		// Encoding round trip.
		got, err := DecodeDescriptor(d.AppendEncoded(nil))
		if err != nil || !got.Equal(&d) {
			t.Fatalf("descriptor round trip: %v, %v", got, err)
		}
	})
}
