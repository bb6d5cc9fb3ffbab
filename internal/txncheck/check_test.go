package txncheck

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func committed(id int, ops ...Op) Txn { return Txn{ID: id, Ops: ops, Outcome: Committed} }
func aborted(id int, ops ...Op) Txn   { return Txn{ID: id, Ops: ops, Outcome: Aborted} }
func unknown(id int, ops ...Op) Txn   { return Txn{ID: id, Ops: ops, Outcome: Unknown} }

// at sets a transaction's start and commit revisions.
func at(start, commit uint64, t Txn) Txn { t.Start, t.Commit = start, commit; return t }

var (
	app  = AppendOp
	read = ReadOp
)

func kinds(as []Anomaly) []AnomalyKind {
	var out []AnomalyKind
	for _, a := range as {
		out = append(out, a.Kind)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func mustCheck(t *testing.T, h []Txn) Result {
	t.Helper()
	res, err := Check(h)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range res.Anomalies {
		t.Logf("%s", a)
	}
	return res
}

// TestCorrectHistoryPasses: a serial history with reads of every kind,
// an aborted and an unseen unknown transaction has no anomaly, and the
// dependencies between its transactions are all found.
func TestCorrectHistoryPasses(t *testing.T) {
	h := []Txn{
		at(1, 2, committed(1, app("x", 1), app("y", 1))),
		at(3, 4, committed(2, read("x", 1), app("x", 2), read("x", 1, 2), read("z"))),
		at(3, 0, aborted(3, read("x", 1, 2), app("y", 30))),
		at(5, 6, committed(4, read("x", 1, 2), read("y", 1), app("y", 2), app("y", 3))),
		at(5, 0, unknown(5, app("x", 50))),
		at(7, 7, committed(6, read("x", 1, 2), read("y", 1, 2, 3))),
	}
	res := mustCheck(t, h)
	if len(res.Anomalies) != 0 {
		t.Fatalf("anomalies in a serial history: %v", res.Anomalies)
	}
	if res.Committed != 4 || res.Aborted != 1 || res.Unknown != 1 || res.UnknownSeen != 0 {
		t.Fatalf("counts: %+v", res)
	}
	// ww: 1→2 (x), 1→4 (y); wr: 1→2, 1→4, 2→4, 2→6, 4→6; no rw: the
	// only read that misses a later append is T2's of x before its own.
	if res.Edges[WW] != 2 || res.Edges[WR] != 5 || res.Edges[RW] != 0 {
		t.Fatalf("edges: %v", res.Edges)
	}
}

func TestAnomaliesAreCaught(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    []Txn
		// want is every kind reported; forbiddenSI and forbiddenSer are
		// the kinds each level must refuse.
		want, forbiddenSI, forbiddenSer []AnomalyKind
	}{{
		// Both read [1] and appended: the second write lost the first's
		// read-modify-write (T2 read 1 but not the 2 ordered before its 3).
		name: "lost update",
		h: []Txn{
			committed(0, app("x", 1)),
			committed(1, read("x", 1), app("x", 2)),
			committed(2, read("x", 1), app("x", 3)),
			committed(3, read("x", 1, 2, 3)),
		},
		want: []AnomalyKind{GSingle}, forbiddenSI: []AnomalyKind{GSingle}, forbiddenSer: []AnomalyKind{GSingle},
	}, {
		// T2 saw T1's append to x but not its append to y.
		name: "fractured read",
		h: []Txn{
			committed(1, app("x", 1), app("y", 1)),
			committed(2, read("x", 1), read("y")),
			committed(3, read("x", 1), read("y", 1)),
		},
		want: []AnomalyKind{GSingle}, forbiddenSI: []AnomalyKind{GSingle}, forbiddenSer: []AnomalyKind{GSingle},
	}, {
		name: "aborted read",
		h: []Txn{
			aborted(1, app("x", 1)),
			committed(2, read("x", 1)),
		},
		want: []AnomalyKind{G1a}, forbiddenSI: []AnomalyKind{G1a}, forbiddenSer: []AnomalyKind{G1a},
	}, {
		name: "intermediate read",
		h: []Txn{
			committed(1, app("x", 1), app("x", 2)),
			committed(2, read("x", 1)),
			committed(3, read("x", 1, 2)),
		},
		// T2 also misses 2 (rw 2→1) after reading 1 (wr 1→2): a G-single.
		want: []AnomalyKind{G1b, GSingle}, forbiddenSI: []AnomalyKind{G1b, GSingle}, forbiddenSer: []AnomalyKind{G1b, GSingle},
	}, {
		// Each read both keys and appended to one: allowed by snapshot
		// isolation, not by serializability.
		name: "write skew",
		// Their revisions agree: both started before either committed.
		h: []Txn{
			at(1, 1, committed(0, app("x", 1), app("y", 1))),
			at(2, 4, committed(1, read("x", 1), read("y", 1), app("x", 2))),
			at(3, 5, committed(2, read("x", 1), read("y", 1), app("y", 2))),
			at(6, 6, committed(3, read("x", 1, 2), read("y", 1, 2))),
		},
		want: []AnomalyKind{G2}, forbiddenSI: nil, forbiddenSer: []AnomalyKind{G2},
	}, {
		// T2 read at 3 what T1 committed at 5.
		name: "read from the future",
		h: []Txn{
			at(1, 5, committed(1, app("x", 1))),
			at(3, 3, committed(2, read("x", 1))),
		},
		want: []AnomalyKind{RevisionOrder}, forbiddenSI: []AnomalyKind{RevisionOrder}, forbiddenSer: []AnomalyKind{RevisionOrder},
	}, {
		// T2 read at 5 and missed what T1 committed at 2; no cycle.
		name: "stale read",
		h: []Txn{
			at(1, 2, committed(1, app("x", 1))),
			at(5, 6, committed(2, read("x"))),
			at(7, 7, committed(3, read("x", 1))),
		},
		want: []AnomalyKind{RevisionOrder}, forbiddenSI: []AnomalyKind{RevisionOrder}, forbiddenSer: []AnomalyKind{RevisionOrder},
	}, {
		// x's order puts T2's append after T1's, which committed later.
		name: "write order against the commits",
		h: []Txn{
			at(1, 6, committed(1, app("x", 1))),
			at(2, 3, committed(2, app("x", 2))),
			at(7, 7, committed(3, read("x", 1, 2))),
		},
		want: []AnomalyKind{RevisionOrder}, forbiddenSI: []AnomalyKind{RevisionOrder}, forbiddenSer: []AnomalyKind{RevisionOrder},
	}, {
		name: "write cycle",
		h: []Txn{
			committed(1, app("x", 1), app("y", 2)),
			committed(2, app("x", 2), app("y", 1)),
			committed(3, read("x", 1, 2), read("y", 1, 2)),
		},
		want: []AnomalyKind{G0}, forbiddenSI: []AnomalyKind{G0}, forbiddenSer: []AnomalyKind{G0},
	}, {
		name: "circular information flow",
		h: []Txn{
			committed(1, app("x", 1), read("y", 1)),
			committed(2, app("y", 1), read("x", 1)),
		},
		want: []AnomalyKind{G1c}, forbiddenSI: []AnomalyKind{G1c}, forbiddenSer: []AnomalyKind{G1c},
	}, {
		name: "incompatible order",
		h: []Txn{
			committed(1, app("x", 1)),
			committed(2, app("x", 2)),
			committed(3, read("x", 1, 2)),
			committed(4, read("x", 2)),
		},
		want: []AnomalyKind{IncompatibleOrder}, forbiddenSI: []AnomalyKind{IncompatibleOrder}, forbiddenSer: []AnomalyKind{IncompatibleOrder},
	}, {
		// An unknown transaction that was seen counts as committed: here
		// it lost T1's update.
		name: "lost update by a seen unknown transaction",
		h: []Txn{
			committed(1, read("x"), app("x", 1)),
			unknown(2, read("x"), app("x", 2)),
			committed(3, read("x", 1, 2)),
		},
		want: []AnomalyKind{GSingle}, forbiddenSI: []AnomalyKind{GSingle}, forbiddenSer: []AnomalyKind{GSingle},
	}, {
		name: "garbage, duplicate and internal reads",
		h: []Txn{
			committed(1, app("x", 1)),
			committed(2, read("x", 1, 1)),
			committed(3, read("y", 7)),
			committed(4, app("z", 4), read("z")),
		},
		want:         []AnomalyKind{DuplicateElement, GarbageRead, Internal},
		forbiddenSI:  []AnomalyKind{DuplicateElement, GarbageRead, Internal},
		forbiddenSer: []AnomalyKind{DuplicateElement, GarbageRead, Internal},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			res := mustCheck(t, tc.h)
			sortKinds := func(k []AnomalyKind) []AnomalyKind { k = slices.Clone(k); slices.Sort(k); return k }
			if got := kinds(res.Anomalies); !slices.Equal(got, sortKinds(tc.want)) {
				t.Errorf("found %v, want %v", got, tc.want)
			}
			if got := kinds(res.Violations(SnapshotIsolation)); !slices.Equal(got, sortKinds(tc.forbiddenSI)) {
				t.Errorf("snapshot isolation refuses %v, want %v", got, tc.forbiddenSI)
			}
			if got := kinds(res.Violations(Serializable)); !slices.Equal(got, sortKinds(tc.forbiddenSer)) {
				t.Errorf("serializable refuses %v, want %v", got, tc.forbiddenSer)
			}
		})
	}
}

// TestUnseenUnknownIsIgnored: an unknown transaction nobody saw adds no
// edge; the same one seen adds its edges.
func TestUnseenUnknownIsIgnored(t *testing.T) {
	h := []Txn{
		committed(1, read("x"), app("x", 1)),
		unknown(2, read("x"), app("x", 2)),
		committed(3, read("x", 1)),
	}
	res := mustCheck(t, h)
	if len(res.Anomalies) != 0 || res.UnknownSeen != 0 || res.Edges[WR] != 1 {
		t.Fatalf("%+v", res)
	}
}

// TestCycleNamesItsTransactions: the report of a cycle lists its edges
// and transactions.
func TestCycleNamesItsTransactions(t *testing.T) {
	res := mustCheck(t, []Txn{
		committed(0, app("x", 1), app("y", 1)),
		committed(7, read("x", 1), read("y", 1), app("x", 2)),
		committed(9, read("x", 1), read("y", 1), app("y", 2)),
		committed(3, read("x", 1, 2), read("y", 1, 2)),
	})
	if len(res.Anomalies) != 1 {
		t.Fatalf("%v", res.Anomalies)
	}
	a := res.Anomalies[0]
	var ids []int
	for _, tx := range a.Txns {
		ids = append(ids, tx.ID)
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []int{7, 9}) || len(a.Cycle) != 2 || a.Cycle[0].Kind != RW || a.Cycle[1].Kind != RW {
		t.Fatalf("%s", a)
	}
	if s := a.String(); !strings.Contains(s, "-rw(x)->") || !strings.Contains(s, "-rw(y)->") {
		t.Fatalf("report: %s", s)
	}
}

func TestMalformedHistory(t *testing.T) {
	for _, h := range [][]Txn{
		{committed(1), committed(1)},
		{committed(1, app("x", 1)), committed(2, app("x", 1))},
		{{ID: 1}},
		{committed(1, Op{Key: "x"})},
	} {
		if _, err := Check(h); !errors.Is(err, ErrMalformed) {
			t.Errorf("%v: %v", h, err)
		}
	}
}
