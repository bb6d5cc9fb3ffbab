package pebbleopts

import (
	"bytes"
	"cmp"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/flotilla-kv/flotilla/internal/keys"
)

// version is a model of a Pebble key of the user half.
type version struct {
	key []byte
	rev uint64
}

// TestComparerOrder: Compare sorts the versions of random user keys
// (sharing prefixes and holding zero bytes, the cases a bytewise order of
// the encoding gets wrong) by user key, then newest first; the local half
// sorts before them and the end of the user half after, bytewise; Split
// cuts exactly the revision.
func TestComparerOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte{0x00, 0x01, 'a', 0xff}
	var vs []version
	for range 2000 {
		k := make([]byte, rng.IntN(4))
		for i := range k {
			k[i] = alphabet[rng.IntN(len(alphabet))]
		}
		revs := []uint64{0, 1, 2, 1 << 40, keys.MaxRevision}
		vs = append(vs, version{k, revs[rng.IntN(len(revs))]})
	}
	encoded := make([][]byte, len(vs))
	for i, v := range vs {
		encoded[i] = keys.MVCCKey(v.key, v.rev)
		if n := keys.Split(encoded[i]); !bytes.Equal(encoded[i][:n], keys.AppendMVCCPrefix(nil, v.key)) {
			t.Fatalf("Split(%x) = %d, want the user key's prefix", encoded[i], n)
		}
		k, rev, ok := keys.DecodeMVCCKey(encoded[i])
		if !ok || !bytes.Equal(k, v.key) || rev != v.rev {
			t.Fatalf("DecodeMVCCKey(%x) = %x, %d, %v; want %x, %d", encoded[i], k, rev, ok, v.key, v.rev)
		}
	}
	slices.SortFunc(vs, func(a, b version) int {
		if c := bytes.Compare(a.key, b.key); c != 0 {
			return c
		}
		return cmp.Compare(b.rev, a.rev)
	})
	slices.SortFunc(encoded, Comparer.Compare)
	// Equal agrees with Compare, on neighbours (equal keys among them:
	// random revisions repeat) and on keys drawn at random.
	for i := range encoded {
		for _, j := range []int{(i + 1) % len(encoded), rng.IntN(len(encoded))} {
			a, b := encoded[i], encoded[j]
			if eq, c := Comparer.Equal(a, b), Comparer.Compare(a, b); eq != (c == 0) {
				t.Fatalf("Equal(%s, %s) = %v but Compare = %d", keys.FormatKey(a), keys.FormatKey(b), eq, c)
			}
		}
	}
	for i, v := range vs {
		k, rev, _ := keys.DecodeMVCCKey(encoded[i])
		if !bytes.Equal(k, v.key) || rev != v.rev {
			t.Fatalf("position %d: %q@%d, want %q@%d", i, k, rev, v.key, v.rev)
		}
	}
	local := [][]byte{keys.RaftLogKey(1<<63, 7), keys.ShardKey(3, keys.ShardDescriptor), keys.EngineIncarnation}
	lo, hi := keys.UserSpan(nil, nil)
	for _, l := range local {
		if Comparer.Compare(l, lo) >= 0 || Comparer.Compare(l, encoded[0]) >= 0 {
			t.Fatalf("local key %x does not sort before the user half", l)
		}
		if keys.Split(l) != len(l) {
			t.Fatalf("Split cut local key %x", l)
		}
	}
	for _, e := range encoded {
		if Comparer.Compare(e, lo) < 0 || Comparer.Compare(e, hi) >= 0 {
			t.Fatalf("version %s outside the user half [%x, %x)", keys.FormatKey(e), lo, hi)
		}
	}
}

// TestComparerInPebble: a Pebble opened with Options finds, for a read of
// a key at revision r, the newest version at or below r, and its bloom
// filters (over user keys, thanks to Split) spare the tables that hold no
// version of a key read at any revision.
func TestComparerInPebble(t *testing.T) {
	opts := Options(pebble.DefaultLogger, 0)
	opts.FS = vfs.NewMem()
	opts.DisableAutomaticCompactions = true
	db, err := pebble.Open("", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Four tables; key k<i> has versions at revisions 10, 20 and 30 in
	// table i%4, with values naming the revision.
	for table := range 4 {
		for i := table; i < 400; i += 4 {
			for _, rev := range []uint64{10, 20, 30} {
				k := keys.MVCCKey([]byte{'k', byte(i >> 8), byte(i)}, rev)
				if err := db.Set(k, []byte{byte(rev)}, pebble.NoSync); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := db.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	it, err := db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { it.Close() }()
	for i := range 400 {
		uk := []byte{'k', byte(i >> 8), byte(i)}
		for _, c := range []struct{ at, want uint64 }{{5, 0}, {10, 10}, {15, 10}, {20, 20}, {29, 20}, {30, 30}, {keys.MaxRevision, 30}} {
			got := uint64(0)
			if it.SeekPrefixGE(keys.MVCCKey(uk, c.at)) {
				got = uint64(it.Value()[0])
			}
			if got != c.want {
				t.Fatalf("%q at %d: version %d, want %d", uk, c.at, got, c.want)
			}
		}
	}
	// A range deletion over some keys' versions (a split's cleanup, a
	// snapshot's restore), in a table of its own: point reads at any
	// revision see those keys gone and the others unchanged.
	lo, hi := keys.UserSpan([]byte{'k', 0, 100}, []byte{'k', 0, 200})
	if err := db.DeleteRange(lo, hi, pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	it.Close()
	if it, err = db.NewIter(nil); err != nil {
		t.Fatal(err)
	}
	for i := range 400 {
		uk := []byte{'k', byte(i >> 8), byte(i)}
		want := uint64(20)
		if i >= 100 && i < 200 {
			want = 0
		}
		got := uint64(0)
		if it.SeekPrefixGE(keys.MVCCKey(uk, 25)); it.Valid() {
			got = uint64(it.Value()[0])
		}
		if got != want {
			t.Fatalf("after DeleteRange, %q at 25: version %d, want %d", uk, got, want)
		}
	}
	before := db.Metrics().Filter.Hits
	for i := range 200 {
		uk := []byte{'k', byte(i >> 8), byte(i), 'x'} // inside every table's bounds
		if it.SeekPrefixGE(keys.MVCCKey(uk, uint64(i))) {
			t.Fatalf("found a version of absent key %q", uk)
		}
	}
	// 200 reads over 4 tables: 800 probes, about 1% let through.
	if hits := db.Metrics().Filter.Hits - before; hits < 700 {
		t.Errorf("the filters spared %d of 800 table reads, want at least 700", hits)
	}
}
