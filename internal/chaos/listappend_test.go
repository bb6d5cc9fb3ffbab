package chaos

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/flotilla-kv/flotilla/internal/txncheck"
	"github.com/flotilla-kv/flotilla/router"
)

// serialListAppend is a list-append history of n transactions run one
// after another on a perfect store (some of unknown outcome, applied or
// not, some aborted), ending with a read of every key.
func serialListAppend(seed uint64, n int) []txncheck.Txn {
	rng := rand.New(rand.NewPCG(seed, 2))
	names := []string{"k0", "k1", "k2", "k3"}
	lists := map[string][]int{}
	var h []txncheck.Txn
	rev, value := uint64(10), 0
	for id := 1; id <= n; id++ {
		t := txncheck.Txn{ID: id, Start: rev}
		mine := map[string][]int{}
		for range 1 + rng.IntN(4) {
			k := names[rng.IntN(len(names))]
			cur, ok := mine[k]
			if !ok {
				cur = slices.Clone(lists[k])
			}
			if rng.IntN(2) == 0 {
				t.Ops = append(t.Ops, txncheck.ReadOp(k, cur...))
				continue
			}
			value++
			mine[k] = append(cur, value)
			t.Ops = append(t.Ops, txncheck.AppendOp(k, value))
		}
		applied := true
		switch p := rng.Float64(); {
		case p < 0.1:
			t.Outcome, applied = txncheck.Aborted, false
		case p < 0.2:
			t.Outcome, applied = txncheck.Unknown, p < 0.15
		default:
			t.Outcome = txncheck.Committed
		}
		if applied && len(mine) > 0 {
			rev++
			for k, l := range mine {
				lists[k] = l
			}
		}
		if t.Outcome == txncheck.Committed {
			t.Commit = rev
		}
		h = append(h, t)
	}
	final := txncheck.Txn{ID: n + 1, Outcome: txncheck.Committed, Start: rev, Commit: rev}
	for _, k := range names {
		final.Ops = append(final.Ops, txncheck.ReadOp(k, lists[k]...))
	}
	return append(h, final)
}

func TestListAppendCleanHistoriesPass(t *testing.T) {
	for seed := range uint64(20) {
		h := serialListAppend(seed, 80)
		for _, level := range []txncheck.Level{txncheck.SnapshotIsolation, txncheck.Serializable} {
			rep := checkListAppend(h, level)
			if len(rep.Violations) > 0 {
				t.Fatalf("seed %d at %s: %v", seed, level, rep.Violations)
			}
			if rep.Committed == 0 || rep.WR == 0 || rep.WW == 0 {
				t.Fatalf("seed %d: too little in the history: %+v", seed, rep)
			}
		}
		if !plantedAbortCaught(h) {
			t.Fatalf("seed %d: a committed append recorded as aborted was not reported", seed)
		}
	}
}

func wantTxnViolation(t *testing.T, rep TxnReport, want string) {
	t.Helper()
	for _, v := range rep.Violations {
		if strings.Contains(v, want) {
			return
		}
	}
	t.Errorf("at %s: no violation containing %q; got %q", rep.Level, want, rep.Violations)
}

func TestListAppendCatchesPlantedAnomalies(t *testing.T) {
	c := func(id int, ops ...txncheck.Op) txncheck.Txn {
		return txncheck.Txn{ID: id, Outcome: txncheck.Committed, Ops: ops}
	}
	ap, rd := txncheck.AppendOp, txncheck.ReadOp
	// A lost append: T1's append was read, then T3's append replaced the
	// list without it.
	lost := []txncheck.Txn{
		c(1, ap("x", 1)),
		c(2, rd("x", 1)),
		c(3, ap("x", 2)),
		c(4, rd("x", 2)),
	}
	// G1c: each of two transactions read the other's append.
	g1c := []txncheck.Txn{
		c(1, ap("x", 1), rd("y", 2)),
		c(2, ap("y", 2), rd("x", 1)),
		c(3, rd("x", 1), rd("y", 2)),
	}
	// Write skew (G2): allowed at snapshot isolation only.
	skew := []txncheck.Txn{
		c(1, rd("x"), rd("y"), ap("x", 1)),
		c(2, rd("x"), rd("y"), ap("y", 2)),
		c(3, rd("x", 1), rd("y", 2)),
	}
	// An aborted transaction's append read (G1a).
	aborted := []txncheck.Txn{
		{ID: 1, Outcome: txncheck.Aborted, Ops: []txncheck.Op{ap("x", 1)}},
		c(2, rd("x", 1)),
	}
	for _, level := range []txncheck.Level{txncheck.SnapshotIsolation, txncheck.Serializable} {
		wantTxnViolation(t, checkListAppend(lost, level), "incompatible-order")
		wantTxnViolation(t, checkListAppend(g1c, level), "G1c")
		wantTxnViolation(t, checkListAppend(aborted, level), "G1a")
	}
	wantTxnViolation(t, checkListAppend(skew, txncheck.Serializable), "G2")
	if rep := checkListAppend(skew, txncheck.SnapshotIsolation); len(rep.Violations) > 0 || rep.Allowed != 1 {
		t.Errorf("write skew at snapshot isolation: %+v", rep)
	}
	// A malformed history is a violation, not a pass.
	dup := []txncheck.Txn{c(1, ap("x", 1)), c(2, ap("x", 1))}
	wantTxnViolation(t, checkListAppend(dup, txncheck.Serializable), "malformed")
}

func TestListCodec(t *testing.T) {
	l := []int{3, 1, 4}
	got := decodeList(router.GetResult{Found: true, KV: router.KeyValue{Value: encodeList(l)}})
	if !slices.Equal(got, l) {
		t.Fatalf("round trip: %v", got)
	}
	if got := decodeList(router.GetResult{}); got != nil {
		t.Fatalf("absent key: %v", got)
	}
	if got := decodeList(router.GetResult{Found: true, KV: router.KeyValue{Value: []byte("1,x")}}); !slices.Equal(got, []int{1, -1}) {
		t.Fatalf("garbage: %v", got)
	}
}
