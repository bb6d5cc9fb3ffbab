package shard

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/flotilla-kv/flotilla/internal/keys"
)

// snapshotSource builds a shard with data, client records (including a
// failed CAS and a split result) and neighbours outside its range, and
// returns it with its image.
func snapshotSource(tb testing.TB, cfg Config) (*harness, []byte) {
	tb.Helper()
	h := newHarness(tb, cfg, testDesc())
	for i := range 40 {
		h.mustOK(put(hdr(uint64(i%5+1), uint64(i+1)), fmt.Sprintf("c%03d", i), strings.Repeat("v", i)))
	}
	h.mustOK(cas(hdr(9, 1), "c001", nil, "x"))
	h.mustOK(del(hdr(0, 0), "c002"))
	h.mustOK(Command{Kind: KindCompact, Revision: 5}) // the image carries it
	h.mustOK(splitCmd(hdr(10, 1), "k", 2, mapping...))
	// Outside the shard: must not be part of the image.
	for _, k := range []string{"a", "l", "z"} {
		setVersion(tb, h.db, k, "outside")
	}
	snap := h.db.NewSnapshot()
	defer snap.Close()
	var buf bytes.Buffer
	if err := h.sm.Snapshot(snap, &buf); err != nil {
		tb.Fatal(err)
	}
	return h, buf.Bytes()
}

// shardState renders what an image carries: the shard's local keys and its
// user span.
func shardState(tb testing.TB, r pebble.Reader, d *Descriptor) string {
	tb.Helper()
	var sb strings.Builder
	for _, span := range [][2][]byte{
		func() [2][]byte { lo, hi := keys.ShardPrefix(uint64(d.ShardID)); return [2][]byte{lo, hi} }(),
		func() [2][]byte { lo, hi := keys.UserSpan(d.Start, d.End); return [2][]byte{lo, hi} }(),
	} {
		it, err := r.NewIter(&pebble.IterOptions{LowerBound: span[0], UpperBound: span[1]})
		if err != nil {
			tb.Fatal(err)
		}
		for valid := it.First(); valid; valid = it.Next() {
			fmt.Fprintf(&sb, "%x=%x\n", it.Key(), it.Value())
		}
		it.Close()
	}
	return sb.String()
}

// restoreInto restores img into a fresh target DB that holds stale state of
// the same shard; it returns the target, the batch and Restore's error.
func restoreInto(tb testing.TB, cfg Config, img []byte) (*pebble.DB, *pebble.Batch, error) {
	tb.Helper()
	db := newDB(tb)
	stale := testDesc()
	stale.End = nil // a wider, older range
	if err := db.Set(keys.ShardKey(1, keys.ShardDescriptor), stale.AppendEncoded(nil), nil); err != nil {
		tb.Fatal(err)
	}
	for _, kv := range [][2]string{{"c000", "stale"}, {"c999", "stale"}, {"x", "beyond the image"}} {
		setVersion(tb, db, kv[0], kv[1])
	}
	if err := db.Set(keys.ShardClientKey(1, 999), appendClientRecord(nil, 1, 1, &Result{Succeeded: true, Revision: 1}), nil); err != nil {
		tb.Fatal(err)
	}
	sm, err := NewStateMachine(cfg, 1, 2, db)
	if err != nil {
		tb.Fatal(err)
	}
	b := db.NewBatch()
	tb.Cleanup(func() { b.Close() })
	return db, b, sm.Restore(b, bytes.NewReader(img))
}

func TestSnapshotRoundTrip(t *testing.T) {
	for _, chunk := range []int64{1, 100, 0} {
		t.Run(fmt.Sprintf("chunk=%d", chunk), func(t *testing.T) {
			cfg := Config{SnapshotChunkBytes: chunk}
			src, img := snapshotSource(t, cfg)
			desc, _ := src.sm.Descriptor()
			db, b, err := restoreInto(t, cfg, img)
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Commit(pebble.Sync); err != nil {
				t.Fatal(err)
			}
			if got, want := shardState(t, db, &desc), shardState(t, src.db, &desc); got != want {
				t.Fatalf("restored state differs:\n%s\nwant:\n%s", got, want)
			}
			if v, _ := get(t, db, "x"); v != "beyond the image" {
				t.Fatal("restore touched data outside the image's range")
			}
			// The restored replica loads the same descriptor and client
			// table, so it deduplicates like the source.
			sm, err := NewStateMachine(cfg, 1, 2, db)
			if err != nil {
				t.Fatal(err)
			}
			if d, ok := sm.Descriptor(); !ok || !d.Equal(&desc) {
				t.Fatalf("restored descriptor %s, want %s", &d, &desc)
			}
			if sm.clients.len() != src.sm.clients.len() {
				t.Fatalf("restored %d clients, want %d", sm.clients.len(), src.sm.clients.len())
			}
			for r := src.sm.clients.head; r != nil; r = r.next {
				if got := sm.clients.byID[r.id]; got == nil || got.seq != r.seq || got.stamp != r.stamp {
					t.Fatalf("client %d restored as %+v", r.id, got)
				}
			}
			// Snapshotting the restored replica gives the same image.
			var again bytes.Buffer
			if err := sm.Snapshot(db, &again); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again.Bytes(), img) {
				t.Fatal("image of the restored replica differs")
			}
		})
	}
}

// TestRestoreRefusesDamage flips every bit position's byte and cuts the
// image at every length: each must fail with ErrCorruptSnapshot and leave
// the batch empty.
func TestRestoreRefusesDamage(t *testing.T) {
	cfg := Config{SnapshotChunkBytes: 64}
	_, img := snapshotSource(t, cfg)
	db := newDB(t)
	sm, err := NewStateMachine(cfg, 1, 2, db)
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, data []byte) {
		t.Helper()
		b := db.NewBatch()
		defer b.Close()
		err := sm.Restore(b, bytes.NewReader(data))
		if !errors.Is(err, ErrCorruptSnapshot) {
			t.Fatalf("%s: %v", what, err)
		}
		if !b.Empty() {
			t.Fatalf("%s: refused image wrote into the batch", what)
		}
	}
	damaged := make([]byte, len(img))
	for i := range img {
		copy(damaged, img)
		damaged[i] ^= 1 << (i % 8)
		check(fmt.Sprintf("bit flipped in byte %d/%d", i, len(img)), damaged)
	}
	for n := range len(img) {
		check(fmt.Sprintf("cut at %d/%d", n, len(img)), img[:n])
	}
	check("trailing byte", append(bytes.Clone(img), 0))
	check("image twice", append(bytes.Clone(img), img...))

	// An intact image of another shard.
	other := newHarness(t, cfg, func() Descriptor { d := testDesc(); d.ShardID = 5; return d }())
	var buf bytes.Buffer
	if err := other.sm.Snapshot(other.db, &buf); err != nil {
		t.Fatal(err)
	}
	check("image of another shard", buf.Bytes())
}

// TestRestoreRefusesReorderedFrames swaps two intact data frames: every
// frame checksum holds, the image checksum does not, and key order breaks.
func TestRestoreRefusesReorderedFrames(t *testing.T) {
	_, img := snapshotSource(t, Config{SnapshotChunkBytes: 64})
	var frames [][]byte
	for rest := img; len(rest) > 0; {
		n := frameHeaderLen + int(uint32(rest[1])<<24|uint32(rest[2])<<16|uint32(rest[3])<<8|uint32(rest[4])) + 4
		frames, rest = append(frames, rest[:n]), rest[n:]
	}
	var d1, d2 int
	for i, f := range frames {
		if f[0] == frameData {
			if d1 == 0 {
				d1 = i
			} else {
				d2 = i
				break
			}
		}
	}
	if d2 == 0 {
		t.Fatal("image has fewer than two data frames")
	}
	frames[d1], frames[d2] = frames[d2], frames[d1]
	_, b, err := restoreInto(t, Config{}, bytes.Join(frames, nil))
	if !errors.Is(err, ErrCorruptSnapshot) || !b.Empty() {
		t.Fatalf("reordered image: %v, batch empty %v", err, b.Empty())
	}
}

type failingReader struct{ err error }

func (r failingReader) Read([]byte) (int, error) { return 0, r.err }

func TestRestorePassesReadErrors(t *testing.T) {
	boom := errors.New("connection reset")
	_, b, err := restoreInto(t, Config{}, nil)
	if !errors.Is(err, ErrCorruptSnapshot) {
		t.Fatalf("empty image: %v", err)
	}
	sm, _ := NewStateMachine(Config{}, 1, 1, newDB(t))
	err = sm.Restore(b, io.MultiReader(bytes.NewReader([]byte{frameHeader}), failingReader{boom}))
	if !errors.Is(err, boom) || !b.Empty() {
		t.Fatalf("read error: %v", err)
	}
}

func TestSnapshotOfUninitialisedShard(t *testing.T) {
	db := newDB(t)
	sm, err := NewStateMachine(Config{}, 1, 1, db)
	if err != nil {
		t.Fatal(err)
	}
	if err := sm.Snapshot(db, io.Discard); !errors.Is(err, ErrShardNotFound) {
		t.Fatalf("snapshot without descriptor: %v", err)
	}
}

func FuzzRestore(f *testing.F) {
	cfg := Config{SnapshotChunkBytes: 64}
	_, img := snapshotSource(f, cfg)
	f.Add(img)
	f.Add(img[:len(img)/2])
	f.Add(img[:len(img)-1])
	flipped := bytes.Clone(img)
	flipped[len(flipped)/3] ^= 0x20
	f.Add(flipped)
	f.Add([]byte{})
	f.Add([]byte{frameHeader, 0xff, 0xff, 0xff, 0xff})
	db := newDB(f)
	sm, err := NewStateMachine(cfg, 1, 2, db)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		b := db.NewBatch()
		defer b.Close()
		if err := sm.Restore(b, bytes.NewReader(data)); err != nil {
			if !errors.Is(err, ErrCorruptSnapshot) {
				t.Fatalf("error %v does not wrap ErrCorruptSnapshot", err)
			}
			if !b.Empty() {
				t.Fatal("refused image wrote into the batch")
			}
			return
		}
		if b.Empty() {
			t.Fatal("accepted image wrote nothing")
		}
	})
}
