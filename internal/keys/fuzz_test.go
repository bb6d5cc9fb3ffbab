package keys

import (
	"bytes"
	"cmp"
	"math"
	"testing"
)

// inSpan reports whether k lies in [lo, hi) in Pebble's order.
func inSpan(k, lo, hi []byte) bool {
	return Compare(k, lo) >= 0 && Compare(k, hi) < 0
}

// FuzzUserKeys: the versioned key encoding orders versions by user key,
// then newest first, round-trips, and maps containment in a user range
// [start, end) (empty end = +inf) to containment in its Pebble span, at
// every revision; no local key ever falls in a user span.
func FuzzUserKeys(f *testing.F) {
	f.Add([]byte("a"), []byte("b"), []byte("a"), []byte("m"), uint64(1), uint64(2))
	f.Add([]byte{}, []byte{0xff}, []byte{}, []byte{}, uint64(0), uint64(math.MaxUint64))
	f.Add([]byte("m"), []byte("m\x00"), []byte("m"), []byte("m\x00"), uint64(5), uint64(5))
	f.Add([]byte{0xff, 0xff}, []byte{0x00}, []byte("c"), []byte{}, uint64(9), uint64(3))
	f.Add([]byte("a"), []byte("a\x00\x00\x00\x00\x00\x00\x00\x00"), []byte("a"), []byte("a\x00"), uint64(1), uint64(1))
	f.Fuzz(func(t *testing.T, a, b, start, end []byte, ra, rb uint64) {
		ua, ub := MVCCKey(a, ra), MVCCKey(b, rb)
		want := bytes.Compare(a, b)
		if want == 0 {
			want = -cmp.Compare(ra, rb) // newest first
		}
		if got := Compare(ua, ub); got != want {
			t.Fatalf("order of %x@%d, %x@%d: %d, want %d", a, ra, b, rb, got, want)
		}
		if k, rev, ok := DecodeMVCCKey(ua); !ok || !IsUserKey(ua) || !bytes.Equal(k, a) || rev != ra {
			t.Fatalf("MVCCKey(%x, %d) = %x does not decode back", a, ra, ua)
		}
		if got := AppendMVCCKey([]byte("prefix"), a, ra); !bytes.Equal(got[len("prefix"):], ua) {
			t.Fatalf("AppendMVCCKey(%x) = %x, want %x", a, got, ua)
		}
		p := MVCCPrefix(ua)
		if !bytes.Equal(p, AppendMVCCPrefix(nil, a)) || Split(p) != len(p) {
			t.Fatalf("MVCCPrefix(%x) = %x", ua, p)
		}
		// The prefix sorts before every version of its key, its immediate
		// successor after them and before every greater user key.
		succ := ImmediateSuccessor(nil, p)
		if Compare(p, ua) >= 0 || Compare(ua, succ) >= 0 || Split(succ) != len(succ) {
			t.Fatalf("%x@%d not between its prefix %x and its successor %x", a, ra, p, succ)
		}
		if bytes.Compare(a, b) < 0 && Compare(succ, ub) > 0 {
			t.Fatalf("successor %x of %x sorts after %x@%d", succ, a, b, rb)
		}
		lo, hi := UserSpan(start, end)
		in := bytes.Compare(a, start) >= 0 && (len(end) == 0 || bytes.Compare(a, end) < 0)
		if got := inSpan(ua, lo, hi); got != in {
			t.Fatalf("key %x@%d in [%x, %x): span says %v, range says %v", a, ra, start, end, got, in)
		}
		// Local keys of every kind stay out of every user span.
		for _, k := range [][]byte{RaftKey(math.MaxUint64, RaftReplicaID), ShardKey(math.MaxUint64, ShardDescriptor),
			PlacementKey(0xff, math.MaxUint64), EngineIncarnation} {
			if inSpan(k, lo, hi) || IsUserKey(k) {
				t.Fatalf("local key %x inside user span [%x, %x)", k, lo, hi)
			}
		}
	})
}

// FuzzLocalKeys: raft log keys sort by (group, index) and round-trip;
// every raft-local and shard-local key of a group lies inside that
// group's prefix and no other group's; RaftKeyGroup recovers the group.
func FuzzLocalKeys(f *testing.F) {
	f.Add(uint64(7), uint64(1), uint64(7), uint64(2), byte(RaftHardState), uint64(9))
	f.Add(uint64(1), uint64(math.MaxUint64), uint64(2), uint64(0), byte(RaftLog), uint64(0))
	f.Add(uint64(255), uint64(256), uint64(256), uint64(255), byte(0xff), uint64(math.MaxUint64))
	// The largest ID: its prefixes end where the next section of the key
	// space starts, not at the (wrapped) prefix of ID+1 = 0.
	f.Add(uint64(math.MaxUint64), uint64(3), uint64(0), uint64(3), byte(RaftLog), uint64(1))
	f.Add(uint64(math.MaxUint64), uint64(math.MaxUint64), uint64(math.MaxUint64-1), uint64(math.MaxUint64), byte(0xff), uint64(math.MaxUint64))
	f.Add(uint64(0), uint64(1), uint64(math.MaxUint64), uint64(1), byte(ShardClient), uint64(0))
	f.Fuzz(func(t *testing.T, g1, i1, g2, i2 uint64, suffix byte, client uint64) {
		k1, k2 := RaftLogKey(g1, i1), RaftLogKey(g2, i2)
		want := 0
		switch {
		case g1 < g2 || (g1 == g2 && i1 < i2):
			want = -1
		case g1 > g2 || (g1 == g2 && i1 > i2):
			want = 1
		}
		if got := bytes.Compare(k1, k2); got != want {
			t.Fatalf("log keys (%d,%d) vs (%d,%d): compare %d, want %d", g1, i1, g2, i2, got, want)
		}
		if RaftLogIndex(k1) != i1 {
			t.Fatalf("RaftLogIndex(%x) = %d, want %d", k1, RaftLogIndex(k1), i1)
		}
		if got := AppendRaftLogKey([]byte("x"), g1, i1); !bytes.Equal(got[1:], k1) {
			t.Fatalf("AppendRaftLogKey = %x, want %x", got[1:], k1)
		}
		lo, hi := RaftPrefix(g1)
		glo, ghi := RaftGroupsSpan()
		slo, shi := ShardPrefix(g1)
		clo, chi := ShardClientPrefix(g1)
		for _, span := range [][2][]byte{{lo, hi}, {slo, shi}, {clo, chi}} {
			if bytes.Compare(span[0], span[1]) >= 0 {
				t.Fatalf("prefix of %d is the empty or inverted span [%x, %x)", g1, span[0], span[1])
			}
		}
		for _, k := range [][]byte{k1, RaftKey(g1, suffix)} {
			if !inSpan(k, lo, hi) || !inSpan(k, glo, ghi) {
				t.Fatalf("raft key %x of group %d outside its prefix [%x, %x)", k, g1, lo, hi)
			}
			if g, s, ok := RaftKeyGroup(k); !ok || g != g1 || s != k[10] {
				t.Fatalf("RaftKeyGroup(%x) = %d, %q, %v; want group %d", k, g, s, ok, g1)
			}
		}
		if g1 != g2 && inSpan(RaftKey(g2, suffix), lo, hi) {
			t.Fatalf("raft key of group %d inside the prefix of group %d", g2, g1)
		}
		ck := ShardClientKey(g1, client)
		if !inSpan(ck, clo, chi) || !inSpan(ck, slo, shi) || !inSpan(ShardKey(g1, suffix), slo, shi) {
			t.Fatalf("shard-local key of shard %d outside its prefix", g1)
		}
		if inSpan(ck, lo, hi) || inSpan(k1, slo, shi) {
			t.Fatalf("raft-local and shard-local keys of %d overlap", g1)
		}
		if g1 != g2 && inSpan(ShardClientKey(g2, client), slo, shi) {
			t.Fatalf("client key of shard %d inside the prefix of shard %d", g2, g1)
		}
		// Nothing of another section falls in a group's or a shard's
		// prefix: a DeleteRange over it removes exactly that state.
		for _, k := range [][]byte{ShardKey(g2, suffix), PlacementKey(suffix, g2), EngineIncarnation, MVCCKey(nil, 0)} {
			if inSpan(k, lo, hi) {
				t.Fatalf("key %x inside the raft prefix [%x, %x) of group %d", k, lo, hi, g1)
			}
		}
		for _, k := range [][]byte{RaftKey(g2, suffix), PlacementKey(suffix, g2), MVCCKey(nil, 0)} {
			if inSpan(k, slo, shi) {
				t.Fatalf("key %x inside the shard prefix [%x, %x) of shard %d", k, slo, shi, g1)
			}
		}
	})
}
