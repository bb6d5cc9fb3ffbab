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
	if bytes.Compare(ShardKey(^uint64(0), ShardDescriptor), UserKey(nil)) >= 0 {
		t.Fatal("shard-local key sorts after user keys")
	}
	ulo, uhi := UserSpan([]byte("a"), nil)
	for _, k := range [][]byte{{}, {0xff, 0xff}, []byte("zzz")} {
		in := bytes.Compare(UserKey(k), ulo) >= 0 && bytes.Compare(UserKey(k), uhi) < 0
		if in != (bytes.Compare(k, []byte("a")) >= 0) {
			t.Fatalf("user key %q: in span = %v", k, in)
		}
	}
	if g, s, ok := RaftKeyGroup(RaftKey(42, RaftHardState)); !ok || g != 42 || s != RaftHardState {
		t.Fatalf("RaftKeyGroup = %d %c %v", g, s, ok)
	}
	if !IsUserKey(UserKey([]byte("x"))) || IsUserKey(RaftKey(1, RaftHardState)) {
		t.Fatal("IsUserKey misclassifies")
	}
	if !bytes.Equal(DecodeUserKey(UserKey([]byte("abc"))), []byte("abc")) {
		t.Fatal("DecodeUserKey does not invert UserKey")
	}
}
