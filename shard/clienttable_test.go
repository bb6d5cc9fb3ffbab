package shard

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/flotilla-kv/flotilla/internal/keys"
)

func TestExactlyOnce(t *testing.T) {
	h := newHarness(t, Config{}, testDesc())
	first := h.mustOK(cas(hdr(5, 10), "k", nil, "v1"))
	if !first.Succeeded {
		t.Fatal("first CAS failed")
	}
	// Another client changes the key; a retry of client 5's CAS must not
	// apply again (it would now fail) but return the first result.
	h.mustOK(put(hdr(6, 1), "k", "other"))
	before := dump(t, h.db)
	if again := h.mustOK(cas(hdr(5, 10), "k", nil, "v1")); !again.Succeeded {
		t.Fatal("retry did not return the recorded success")
	}
	// Even a retry whose body differs (a client bug) returns the record.
	h.mustOK(put(hdr(5, 10), "k", "different"))
	if after := dump(t, h.db); after != before {
		t.Fatal("a retry wrote")
	}
	// A lower sequence number is refused and writes nothing.
	if err, _ := h.apply(put(hdr(5, 9), "k", "late")).(error); !errors.Is(err, ErrStaleSequence) {
		t.Fatalf("stale seq: %v", err)
	}
	if dump(t, h.db) != before {
		t.Fatal("a stale request wrote")
	}
	// The next sequence number applies.
	if v := h.mustOK(cas(hdr(5, 11), "k", nil, "v2")); v.Succeeded || !v.Found || string(v.Value) != "other" {
		t.Fatalf("seq 11: %+v", v)
	}
	// A failed CAS's result is recorded too, value included, and survives
	// a restart.
	h.mustOK(put(hdr(6, 2), "k", "changed again"))
	h.reload()
	if v := h.mustOK(cas(hdr(5, 11), "k", nil, "v2")); v.Succeeded || string(v.Value) != "other" {
		t.Fatalf("retry of seq 11 after restart: %+v", v)
	}
}

func TestClientZeroIsNotDeduplicated(t *testing.T) {
	h := newHarness(t, Config{}, testDesc())
	h.mustOK(cas(hdr(0, 1), "k", nil, "v"))
	if again := h.mustOK(cas(hdr(0, 1), "k", nil, "v")); again.Succeeded {
		t.Fatal("ClientID 0 was deduplicated")
	}
	lo, hi := keys.ShardClientPrefix(1)
	if n := count(t, h.db, lo, hi); n != 0 {
		t.Fatalf("ClientID 0 left %d client records", n)
	}
}

// TestRefusedWriteIsNotRecorded: a write refused at apply may be retried
// with the same Seq once its cause is fixed.
func TestRefusedWriteIsNotRecorded(t *testing.T) {
	h := newHarness(t, Config{}, testDesc())
	if _, ok := h.apply(put(Header{ClientID: 3, Seq: 1, Epoch: Epoch{Version: 1}}, "c", "v")).(error); !ok {
		t.Fatal("stale epoch accepted")
	}
	h.mustOK(put(Header{ClientID: 3, Seq: 1, Epoch: Epoch{Version: 2}}, "c", "v"))
	if v, _ := h.get("c"); v != "v" {
		t.Fatal("retry after a refusal did not apply")
	}
}

func count(tb testing.TB, r pebble.Reader, lo, hi []byte) int {
	tb.Helper()
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		tb.Fatal(err)
	}
	defer it.Close()
	n := 0
	for valid := it.First(); valid; valid = it.Next() {
		n++
	}
	return n
}

func hasClient(h *harness, id uint64) bool {
	_, closer, err := h.db.Get(keys.ShardClientKey(1, id))
	if err == nil {
		closer.Close()
	}
	return err == nil
}

func TestClientTableExpiry(t *testing.T) {
	h := newHarness(t, Config{ClientTTLEntries: 5}, testDesc())
	h.mustOK(cas(hdr(1, 1), "k", nil, "a")) // index 11
	for range 4 {                           // indexes 12..15
		h.mustOK(put(hdr(0, 0), "d", "y"))
	}
	// At index 16 = 11 + 5 the record still counts.
	if r := h.mustOK(cas(hdr(1, 1), "k", nil, "a")); !r.Succeeded {
		t.Fatal("record expired too early")
	}
	// At index 17 > 11 + 5 it is gone: the retry applies (and fails).
	if r := h.mustOK(cas(hdr(1, 1), "k", nil, "a")); r.Succeeded {
		t.Fatal("expired record still deduplicates")
	}
	// That write recorded client 1 afresh at 17; entries that apply prune
	// expired records from Pebble, refused ones do not.
	h.mustOK(put(hdr(2, 1), "d", "y")) // 18
	for range 5 {                      // 19..23
		h.apply(put(hdr(0, 0), "zzz", "out of range"))
	}
	if !hasClient(h, 1) {
		t.Fatal("refused entries pruned the client table")
	}
	h.mustOK(put(hdr(0, 0), "d", "y")) // 24: 17 and 18 expire
	if hasClient(h, 1) || hasClient(h, 2) || h.sm.clients.len() != 0 {
		t.Fatal("expired records not deleted")
	}
}

func TestClientTableEviction(t *testing.T) {
	h := newHarness(t, Config{MaxClients: 3}, testDesc())
	for id := uint64(1); id <= 3; id++ {
		h.mustOK(put(hdr(id, 1), "k", "v"))
	}
	h.mustOK(put(hdr(1, 2), "k", "v")) // client 1 is now the most recent
	h.mustOK(put(hdr(4, 1), "k", "v")) // evicts client 2, the oldest
	if hasClient(h, 2) || !hasClient(h, 1) || !hasClient(h, 3) || !hasClient(h, 4) {
		t.Fatal("wrong record evicted")
	}
	// An evicted client is unknown: its old Seq applies again.
	h.mustOK(put(hdr(2, 1), "k", "again"))
	if v, _ := h.get("k"); v != "again" {
		t.Fatal("evicted client was still deduplicated")
	}
	if h.sm.clients.len() != 3 {
		t.Fatalf("table holds %d clients", h.sm.clients.len())
	}
}

// TestClientTableDeterministic runs one random workload on two replicas,
// one of which restarts (reloads from Pebble) often: they must end with
// identical stores, and return identical results along the way.
func TestClientTableDeterministic(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	cfg := Config{MaxClients: 4, ClientTTLEntries: 20}
	a, b := newHarness(t, cfg, testDesc()), newHarness(t, cfg, testDesc())
	seqs := map[uint64]uint64{}
	for i := range 2000 {
		client := rng.Uint64N(8)
		seq := seqs[client]
		switch rng.IntN(4) {
		case 0: // retry
		case 1: // stale
			seq -= min(seq, 1)
		default:
			seq++
			seqs[client] = seq
		}
		var cmd Command
		key := fmt.Sprintf("k%d", rng.IntN(3))
		if rng.IntN(2) == 0 {
			cmd = put(hdr(client, seq), key, fmt.Sprint(i))
		} else {
			cmd = cas(hdr(client, seq), key, strp(fmt.Sprint(rng.IntN(i+1))), fmt.Sprint(i))
		}
		ra, rb := a.apply(cmd), b.apply(cmd)
		if fmt.Sprint(ra) != fmt.Sprint(rb) {
			t.Fatalf("step %d: results differ: %v vs %v", i, ra, rb)
		}
		if rng.IntN(10) == 0 {
			b.reload()
		}
	}
	if da, db := dump(t, a.db), dump(t, b.db); da != db {
		t.Fatalf("replicas diverged:\n%s\nvs\n%s", da, db)
	}
}

func TestClientRecordEncoding(t *testing.T) {
	l, r := testDesc(), testDesc()
	r.ShardID = 2
	for _, res := range []*Result{{Succeeded: true, Revision: 7}, {}, {Found: true, Value: []byte{}}, {Found: true, Value: []byte("v")}, {Succeeded: true, Left: &l, Right: &r}} {
		enc := appendClientRecord(nil, 7, 9, res)
		seq, stamp, got, err := decodeClientRecord(enc)
		if err != nil || seq != 7 || stamp != 9 || !resultsEqual(got, res) {
			t.Fatalf("%+v: got %d %d %+v %v", res, seq, stamp, got, err)
		}
		for n := range len(enc) {
			if _, _, _, err := decodeClientRecord(enc[:n]); err == nil {
				t.Fatalf("%+v cut at %d decoded", res, n)
			}
		}
	}
}

func resultsEqual(a, b *Result) bool {
	descEq := func(x, y *Descriptor) bool { return x == nil && y == nil || x != nil && y != nil && x.Equal(y) }
	return a.Succeeded == b.Succeeded && a.Found == b.Found && string(a.Value) == string(b.Value) &&
		(a.Value == nil) == (b.Value == nil) && descEq(a.Left, b.Left) && descEq(a.Right, b.Right)
}
