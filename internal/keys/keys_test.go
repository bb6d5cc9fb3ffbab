package keys

import (
	"bytes"
	"testing"
)

func TestOrdering(t *testing.T) {
	// Every local key sorts before every user key, and a group's log keys
	// sort by index and stay inside the group's prefix.
	lo, hi := RaftPrefix(7)
	prev := lo
	for _, idx := range []uint64{0, 1, 255, 256, 1 << 40} {
		k := RaftLogKey(7, idx)
		if bytes.Compare(k, prev) <= 0 || bytes.Compare(k, hi) >= 0 {
			t.Fatalf("log key %x out of order or outside [%x, %x)", k, lo, hi)
		}
		if RaftLogIndex(k) != idx {
			t.Fatalf("RaftLogIndex(%x) = %d, want %d", k, RaftLogIndex(k), idx)
		}
		prev = k
	}
	if Compare(ShardKey(^uint64(0), ShardDescriptor), MVCCKey(nil, MaxRevision)) >= 0 {
		t.Fatal("shard-local key sorts after user keys")
	}
	ulo, uhi := UserSpan([]byte("a"), []byte("b\x00"))
	for _, k := range [][]byte{{}, {0xff, 0xff}, []byte("zzz"), []byte("a"), []byte("b"), []byte("b\x00"), []byte("a\x00\x00\x00\x00\x00\x00\x00\x00\x00")} {
		for _, rev := range []uint64{0, 1, MaxRevision} {
			ek := MVCCKey(k, rev)
			in := Compare(ek, ulo) >= 0 && Compare(ek, uhi) < 0
			if want := bytes.Compare(k, []byte("a")) >= 0 && bytes.Compare(k, []byte("b\x00")) < 0; in != want {
				t.Fatalf("user key %q at %d: in span = %v, want %v", k, rev, in, want)
			}
		}
	}
	if g, s, ok := RaftKeyGroup(RaftKey(42, RaftHardState)); !ok || g != 42 || s != RaftHardState {
		t.Fatalf("RaftKeyGroup = %d %c %v", g, s, ok)
	}
	if !IsUserKey(MVCCKey([]byte("x"), 1)) || IsUserKey(RaftKey(1, RaftHardState)) {
		t.Fatal("IsUserKey misclassifies")
	}
	if k, rev, ok := DecodeMVCCKey(MVCCKey([]byte("abc"), 7)); !ok || !bytes.Equal(k, []byte("abc")) || rev != 7 {
		t.Fatal("DecodeMVCCKey does not invert MVCCKey")
	}
	if _, _, ok := DecodeMVCCKey(RaftKey(1, RaftHardState)); ok {
		t.Fatal("DecodeMVCCKey decodes a raft key")
	}
}
