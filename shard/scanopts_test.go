package shard

import (
	"fmt"
	"testing"

	"github.com/flotilla-kv/flotilla/internal/keys"
	"github.com/flotilla-kv/flotilla/multiraft"
)

// TestCountAndKeysOnlyVersions: at every revision, countAt counts exactly
// the keys a full scan returns (deletes, re-creates and newer versions
// included), tallies the leased ones by lease, and stops at its limit
// naming the last key counted; collectKeys returns the same keys and
// revisions as collect, with no values.
func TestCountAndKeysOnlyVersions(t *testing.T) {
	h := newHarness(t, Config{}, testDesc())
	h.at(10, put(hdr(0, 0), "c", "c1"))
	h.at(20, Command{Kind: KindPut, Key: []byte("d"), Value: []byte("d1"), Lease: 7, LeaseUntil: 1000})
	h.at(30, put(hdr(0, 0), "e", "e1"))
	h.at(40, del(hdr(0, 0), "c"))
	h.at(50, Command{Kind: KindPut, Key: []byte("f"), Value: []byte("f1"), Lease: 7, LeaseUntil: 1000})
	h.at(60, put(hdr(0, 0), "c", "c2"))
	h.at(70, Command{Kind: KindPut, Key: []byte("g"), Value: []byte("g1"), Lease: 9, LeaseUntil: 1000})
	for _, rev := range []uint64{5, 10, 20, 35, 40, 55, 60, 70, keys.MaxRevision} {
		full, more, err := collect(h.db, []byte("b"), []byte("m"), 0, rev)
		if err != nil || more {
			t.Fatalf("collect at %d: %v %v", rev, more, err)
		}
		c, err := countAt(h.db, []byte("b"), []byte("m"), 0, rev)
		if err != nil {
			t.Fatal(err)
		}
		leased := map[uint64]int64{}
		for _, kv := range full {
			if kv.Lease != 0 {
				leased[kv.Lease]++
			}
		}
		if c.Keys != int64(len(full)) || c.More || c.Last != nil || fmt.Sprint(c.Leased) != fmt.Sprint(nilIfEmpty(leased)) {
			t.Errorf("count at %d: %+v; want %d keys, leased %v", rev, c, len(full), leased)
		}
		ko, more, err := collectKeys(h.db, []byte("b"), []byte("m"), 0, rev, scanOptions{keysOnly: true})
		if err != nil || more || len(ko) != len(full) {
			t.Fatalf("keys only at %d: %d keys, %v %v; want %d", rev, len(ko), more, err, len(full))
		}
		for i := range ko {
			want := full[i]
			want.Value = nil
			if ko[i].Value != nil || fmt.Sprint(ko[i]) != fmt.Sprint(want) {
				t.Errorf("keys only at %d: %+v, want %+v", rev, ko[i], want)
			}
		}
	}
	// At 70 the keys are c, d(7), e, f(7), g(9); a limit of 3 stops after e.
	c, err := countAt(h.db, []byte("b"), []byte("m"), 3, 70)
	if err != nil || c.Keys != 3 || !c.More || string(c.Last) != "e" || c.Leased[7] != 1 || len(c.Leased) != 1 {
		t.Fatalf("count with limit 3 at 70: %+v, %v; want 3 keys, more after e, one on lease 7", c, err)
	}
	c, err = countAt(h.db, []byte("e\x00"), []byte("m"), 0, 70)
	if err != nil || c.Keys != 2 || c.More || c.Leased[7] != 1 || c.Leased[9] != 1 {
		t.Fatalf("count of the rest at 70: %+v, %v; want f and g", c, err)
	}
	// A limit equal to the count is not cut.
	if c, err = countAt(h.db, []byte("b"), []byte("m"), 5, 70); err != nil || c.Keys != 5 || c.More {
		t.Fatalf("count with limit 5 at 70: %+v, %v", c, err)
	}
}

func nilIfEmpty(m map[uint64]int64) map[uint64]int64 {
	if len(m) == 0 {
		return nil
	}
	return m
}

// TestStoreCountAndKeysOnly: Store.ScanAt with KeysOnly and Store.CountAt
// read at a revision as ScanAt does (the same keys, limits and more),
// leaving a full ScanAt unchanged; LatestRevision is the revision a
// latest Scan reports, and reads at it see what that Scan saw.
func TestStoreCountAndKeysOnly(t *testing.T) {
	n, ctx := loneShard(t, Config{}, &jumpOracle{})
	s := n.store
	for i := range 20 {
		putRev(t, ctx, s, fmt.Sprintf("c%02d", i), fmt.Sprintf("value-%d", i))
	}
	mid := delRev(t, ctx, s, "c05")
	for i := 20; i < 30; i++ {
		putRev(t, ctx, s, fmt.Sprintf("c%02d", i), "later")
	}
	start, end := []byte("b"), []byte("m")

	full, more, err := s.ScanAt(ctx, 1, Epoch{}, start, end, 0, mid)
	if err != nil || more || len(full) != 19 || string(full[0].Value) != "value-0" {
		t.Fatalf("full scan at %d: %d kvs, %v, %v", mid, len(full), more, err)
	}
	ko, more, err := s.ScanAt(ctx, 1, Epoch{}, start, end, 7, mid, KeysOnly())
	if err != nil || !more || len(ko) != 7 {
		t.Fatalf("keys-only scan at %d, limit 7: %d kvs, %v, %v", mid, len(ko), more, err)
	}
	for i, kv := range ko {
		if kv.Value != nil || string(kv.Key) != string(full[i].Key) || kv.ModRevision != full[i].ModRevision || kv.Version != full[i].Version {
			t.Fatalf("keys-only %d: %+v, want %+v without value", i, kv, full[i])
		}
	}
	c, err := s.CountAt(ctx, 1, Epoch{}, start, end, 0, mid)
	if err != nil || c.Keys != 19 || c.More {
		t.Fatalf("count at %d: %+v, %v; want 19", mid, c, err)
	}
	c, err = s.CountAt(ctx, 1, Epoch{}, start, end, 10, mid)
	if err != nil || c.Keys != 10 || !c.More || string(c.Last) != string(full[9].Key) {
		t.Fatalf("count at %d, limit 10: %+v, %v; want 10, more after %s", mid, c, err, full[9].Key)
	}
	if c, err = s.CountAt(ctx, 1, Epoch{}, []byte("c"), []byte("c"), 0, mid); err != nil || c.Keys != 0 {
		t.Fatalf("count of an empty range: %+v, %v", c, err)
	}

	latest, _, scanRev, err := s.Scan(ctx, 1, Epoch{}, start, end, 0, multiraft.ReadLinearizable)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := s.LatestRevision(ctx, 1, Epoch{}, multiraft.ReadLinearizable)
	if err != nil || rev != scanRev {
		t.Fatalf("latest revision %d, %v; the latest scan saw %d", rev, err, scanRev)
	}
	if c, err = s.CountAt(ctx, 1, Epoch{}, start, end, 0, rev); err != nil || c.Keys != int64(len(latest)) || c.Keys != 29 {
		t.Fatalf("count at the latest revision %d: %+v, %v; the latest scan saw %d keys", rev, c, err, len(latest))
	}
}

// TestCollectMaxBytes: a scan bounded by bytes returns pairs up to the
// first that reaches the bound, at least one, and says more; pages taken
// from each one's last key onward return every pair once.
func TestCollectMaxBytes(t *testing.T) {
	h := newHarness(t, Config{}, testDesc())
	for i, k := range []string{"c", "d", "e", "f", "g"} {
		h.at(uint64(10*(i+1)), put(hdr(0, 0), k, fmt.Sprint(k, "-", string(make([]byte, 99)))))
	}
	// Each pair holds 1 + 101 bytes.
	for _, tc := range []struct {
		max  int
		want int
		more bool
	}{{0, 5, false}, {1, 1, true}, {102, 1, true}, {103, 2, true}, {204, 2, true}, {205, 3, true}, {10000, 5, false}} {
		kvs, more, err := collectKeys(h.db, []byte("b"), []byte("m"), 0, keys.MaxRevision, scanOptions{maxBytes: tc.max})
		if err != nil || len(kvs) != tc.want || more != tc.more {
			t.Errorf("max %d bytes: %d pairs, more %v, %v; want %d, more %v", tc.max, len(kvs), more, err, tc.want, tc.more)
		}
	}
	var got []string
	start := []byte("b")
	for range 10 {
		kvs, more, err := collectKeys(h.db, start, []byte("m"), 0, keys.MaxRevision, scanOptions{maxBytes: 150})
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range kvs {
			got = append(got, string(kv.Key))
		}
		if !more {
			break
		}
		start = append(kvs[len(kvs)-1].Key, 0)
	}
	if fmt.Sprint(got) != "[c d e f g]" {
		t.Fatalf("paged by bytes: %v, want [c d e f g]", got)
	}
}
