package chaos

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The checker must be able to fail: these histories are made by hand,
// some with a planted bug.

func put(client int, key, value string, call, ret int64, outcome Outcome) Op {
	return Op{Client: client, Kind: OpPut, Key: key, Value: value, Call: call, Return: ret, Outcome: outcome}
}

func get(client int, key, out string, call, ret int64) Op {
	return Op{Client: client, Kind: OpGet, Key: key, Out: out, Call: call, Return: ret, Outcome: OK}
}

func final(key, out string, at int64) Op {
	o := get(9, key, out, at, at+1)
	o.Final = true
	return o
}

func cas(client int, key, expect, value string, call, ret int64, swapped bool, current string, outcome Outcome) Op {
	return Op{Client: client, Kind: OpCAS, Key: key, Expect: expect, Value: value, Call: call, Return: ret,
		Swapped: swapped, Current: current, Outcome: outcome}
}

func TestCheckerAcceptsLinearizable(t *testing.T) {
	ops := []Op{
		put(0, "k", "a", 0, 10, OK),
		get(1, "k", "a", 11, 20),
		cas(2, "k", "a", "b", 21, 30, true, "", OK),
		cas(0, "k", "a", "c", 31, 40, false, "b", OK),
		// Concurrent with the put of "d": either value is fine.
		put(1, "k", "d", 41, 60, OK),
		get(2, "k", "b", 42, 50),
		get(0, "k", "d", 61, 70),
		// Unknown writes: one that never happened, one that did.
		put(1, "k", "never", 71, 80, Unknown),
		put(2, "k", "maybe", 81, 90, Unknown),
		get(0, "k", "maybe", 100, 110),
		cas(1, "k", "x", "y", 111, 120, false, "", Unknown),
		// Reads that failed carry no result.
		{Client: 2, Kind: OpGet, Key: "k", Call: 121, Return: 130, Outcome: Failed},
		final("k", "maybe", 200),
		// A second key, independent.
		cas(0, "j", "", "j1", 0, 5, true, "", OK),
		final("j", "j1", 200),
	}
	r := Check(ops, "", "ok")
	if len(r.Violations) != 0 || len(r.Lost) != 0 {
		t.Fatalf("linearizable history rejected: %+v", r)
	}
	if r.Keys != 2 || r.Unknown != 3 || r.Failed != 1 {
		t.Fatalf("counts: %+v", r)
	}
}

func TestCheckerCatchesStaleRead(t *testing.T) {
	// A read after an acknowledged write returns the value before it: what
	// a deposed leader serving a lease read would do.
	ops := []Op{
		put(0, "k", "a", 0, 10, OK),
		put(1, "k", "b", 20, 30, OK),
		get(2, "k", "a", 40, 50),
		final("k", "b", 100),
	}
	dir := t.TempDir()
	r := Check(ops, dir, "stale")
	if len(r.Violations) != 1 {
		t.Fatalf("stale read not caught: %+v", r)
	}
	if !strings.Contains(r.Violations[0], "visualization: ") {
		t.Fatalf("no visualization: %s", r.Violations[0])
	}
	viz, _ := filepath.Glob(filepath.Join(dir, "stale-*.html"))
	if len(viz) != 1 {
		t.Fatalf("visualization files: %v", viz)
	}
	if b, err := os.ReadFile(viz[0]); err != nil || len(b) == 0 {
		t.Fatalf("visualization %s: %d bytes, %v", viz[0], len(b), err)
	}
}

func TestCheckerCatchesBadCAS(t *testing.T) {
	// Two CAS from the same value both swap: a double apply.
	ops := []Op{
		put(0, "k", "a", 0, 10, OK),
		cas(1, "k", "a", "b", 20, 30, true, "", OK),
		cas(2, "k", "a", "c", 40, 50, true, "", OK),
		final("k", "c", 100),
	}
	if r := Check(ops, "", "cas"); len(r.Violations) != 1 {
		t.Fatalf("double CAS not caught: %+v", r)
	}
}

func TestCheckerCatchesFailedWriteThatApplied(t *testing.T) {
	// The router said the put surely did not apply, yet it is read.
	ops := []Op{
		put(0, "k", "a", 0, 10, Failed),
		get(1, "k", "a", 20, 30),
		final("k", "a", 100),
	}
	r := Check(ops, "", "failed")
	if len(r.Violations) != 1 || !strings.Contains(r.Violations[0], "surely not applied") {
		t.Fatalf("applied failed write not caught: %+v", r)
	}
}

func TestCheckerCatchesLostWrite(t *testing.T) {
	// An acknowledged put is followed by a final read of the value before
	// it: the write was lost (say, a leader acknowledged before a quorum
	// had it, then crashed).
	ops := []Op{
		put(0, "k", "a", 0, 10, OK),
		put(1, "k", "b", 20, 30, OK),
		final("k", "a", 100),
	}
	r := Check(ops, "", "lost")
	if len(r.Lost) != 1 || !strings.Contains(r.Lost[0], `"b"`) {
		t.Fatalf("lost write not caught: %+v", r)
	}
	if len(r.Violations) != 1 {
		t.Fatalf("the lost write is also a linearizability violation: %+v", r)
	}

	// An acknowledged CAS lost, and the key read as absent at the end.
	ops = []Op{
		cas(0, "j", "", "j1", 0, 10, true, "", OK),
		final("j", "", 100),
	}
	if r := Check(ops, "", "lostcas"); len(r.Lost) != 1 {
		t.Fatalf("lost CAS not caught: %+v", r)
	}

	// No final read at all: the acknowledged writes are unaccounted for.
	ops = []Op{put(0, "i", "x", 0, 10, OK)}
	if r := Check(ops, "", "nofinal"); len(r.Lost) != 1 {
		t.Fatalf("missing final read not reported: %+v", r)
	}
}

func TestCheckerLostAllowsLaterWrites(t *testing.T) {
	// The final value comes from a write concurrent with, or after, the
	// acknowledged one, or from an unknown write: nothing is lost.
	ops := []Op{
		put(0, "k", "a", 0, 50, OK),
		put(1, "k", "b", 10, 20, OK),
		put(2, "k", "c", 60, 70, Unknown),
		final("k", "c", 100),
	}
	if r := Check(ops, "", "later"); len(r.Lost) != 0 || len(r.Violations) != 0 {
		t.Fatalf("false alarm: %+v", r)
	}
	ops = []Op{
		put(0, "k", "a", 0, 50, OK),
		put(1, "k", "b", 10, 20, OK),
		final("k", "a", 100),
	}
	if r := Check(ops, "", "concurrent"); len(r.Lost) != 0 || len(r.Violations) != 0 {
		t.Fatalf("false alarm: %+v", r)
	}
}

func TestHistoryRoundTrip(t *testing.T) {
	ops := []Op{
		put(0, "k", "a", 0, 10, OK),
		{Client: 3, Kind: OpGet, Key: "k", Lease: true, Node: 2, Call: 5, Return: 6, Outcome: Failed, Err: "unavailable"},
		cas(1, "k", "a", "b", 11, 20, false, "c", Unknown),
		final("k", "a", 100),
	}
	var buf strings.Builder
	if err := WriteHistory(&buf, ops); err != nil {
		t.Fatal(err)
	}
	got, err := ReadHistory(strings.NewReader(buf.String()))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(ops) {
		t.Fatalf("read %d ops, wrote %d", len(got), len(ops))
	}
	for i := range ops {
		if got[i] != ops[i] {
			t.Fatalf("op %d: read %+v, wrote %+v", i, got[i], ops[i])
		}
	}
	for _, bad := range []string{"{\"Kind\":1,\"Outcome\":1}\nnot json\n", "{\"Kind\":9,\"Outcome\":1}\n", "{\"Kind\":1,\"Outcome\":0}\n"} {
		if _, err := ReadHistory(strings.NewReader(bad)); err == nil {
			t.Fatalf("ReadHistory accepted %q", bad)
		}
	}
}

func TestCheckerDeletes(t *testing.T) {
	// A delete makes the key absent: a CAS from absent swaps after it, a
	// get returns "", and a final absent value is accounted for by it.
	ops := []Op{
		put(0, "k", "a", 0, 10, OK),
		del(1, "k", 20, 30, OK),
		get(2, "k", "", 31, 40),
		cas(0, "k", "", "b", 41, 50, true, "", OK),
		del(1, "k", 51, 60, Unknown),
		final("k", "", 100),
	}
	if r := Check(ops, "", "deletes"); len(r.Violations) != 0 || len(r.Lost) != 0 {
		t.Fatalf("false alarm: %+v", r)
	}
	// A read of the value a delete removed, after the delete: stale.
	ops = []Op{
		put(0, "k", "a", 0, 10, OK),
		del(1, "k", 20, 30, OK),
		get(2, "k", "a", 31, 40),
		final("k", "", 100),
	}
	if r := Check(ops, "", "stale-after-delete"); len(r.Violations) != 1 {
		t.Fatalf("stale read after a delete not caught: %+v", r)
	}
	// An acknowledged delete lost: the value before it is read at the end.
	ops = []Op{
		put(0, "k", "a", 0, 10, OK),
		del(1, "k", 20, 30, OK),
		final("k", "a", 100),
	}
	if r := Check(ops, "", "lost-delete"); len(r.Lost) != 1 || !strings.Contains(r.Lost[0], "delete") {
		t.Fatalf("lost delete not caught: %+v", r)
	}
	// A put lost although the key is absent at the end, with no delete after it.
	ops = []Op{
		del(1, "k", 0, 10, OK),
		put(0, "k", "a", 20, 30, OK),
		final("k", "", 100),
	}
	if r := Check(ops, "", "lost-put"); len(r.Lost) != 1 {
		t.Fatalf("lost put not caught: %+v", r)
	}
}
