package router

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/internal/testutil"
	"github.com/flotilla-kv/flotilla/internal/txncheck"
)

// TestTxnListAppend is Elle's list-append workload against a real fleet:
// concurrent clients run transactions of one to four random appends and
// reads over eight keys on four shards, the history is recorded with
// each transaction's outcome, and internal/txncheck judges it: at
// snapshot isolation for plain transactions, then as serializable for
// transactions started with Serializable, with each transaction's start
// and commit revisions checked against the dependencies. Each phase also
// plants an aborted read in its own history and checks it is caught.
func TestTxnListAppend(t *testing.T) {
	c := newOracleCluster(t, 3, 4)
	const clients = 4
	routers := make([]*Client, clients)
	for i := range routers {
		routers[i] = c.client(nil)
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	for _, phase := range []struct {
		name  string
		level txncheck.Level
		opts  []TxnOption
	}{
		{"snapshot", txncheck.SnapshotIsolation, nil},
		{"serializable", txncheck.Serializable, []TxnOption{Serializable()}},
	} {
		t.Run(phase.name, func(t *testing.T) {
			w := newListAppendWorkload(c, phase.name, 8)
			w.run(t, routers, seed, phase.opts)
			res, err := txncheck.Check(w.history)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d transactions: %d committed, %d aborted, %d unknown (%d of them seen); edges ww %d, wr %d, rw %d; %d anomalies, %d allowed at %s",
				len(w.history), res.Committed, res.Aborted, res.Unknown, res.UnknownSeen,
				res.Edges[txncheck.WW], res.Edges[txncheck.WR], res.Edges[txncheck.RW],
				len(res.Anomalies), len(res.Anomalies)-len(res.Violations(phase.level)), phase.level)
			for _, a := range res.Anomalies {
				if txncheck.Allowed(phase.level, a.Kind) {
					t.Logf("allowed at %s: %s", phase.level, a)
					break
				}
			}
			for _, a := range res.Violations(phase.level) {
				t.Errorf("forbidden at %s: %s", phase.level, a)
			}
			// A history with nothing in it proves nothing.
			if res.Committed < listAppendMinCommitted || res.Edges[txncheck.WR] == 0 || res.Edges[txncheck.WW] == 0 {
				t.Errorf("too little to judge: %d committed, edges %v", res.Committed, res.Edges)
			}
			assertPlantedAbortCaught(t, w.history)
		})
	}
}

// listAppendWorkload is one run's keys and the history recorded so far.
type listAppendWorkload struct {
	names []string // a key's name in the history
	keys  [][]byte // its key in the store, spread over the shards

	nextID, nextValue atomic.Int64
	committed         atomic.Int64

	mu      sync.Mutex
	history []txncheck.Txn
}

func newListAppendWorkload(c *cluster, prefix string, n int) *listAppendWorkload {
	w := &listAppendWorkload{}
	for i := range n {
		w.names = append(w.names, "k"+strconv.Itoa(i))
		w.keys = append(w.keys, c.keyIn(i%c.shards+1, "la/"+prefix+"/"+strconv.Itoa(i)))
	}
	return w
}

func (w *listAppendWorkload) record(tx txncheck.Txn) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.history = append(w.history, tx)
}

// The length of a run: at least listAppendRun, and until
// listAppendMinCommitted transactions committed, but no longer than
// listAppendMaxRun.
const (
	listAppendRun          = 2 * time.Second
	listAppendMaxRun       = 15 * time.Second
	listAppendMinCommitted = 40
)

// run runs one client per router (see listAppendRun for how long), then
// reads every key in one last transaction, so that each key's order is
// known to its end.
func (w *listAppendWorkload) run(t *testing.T, routers []*Client, seed uint64, opts []TxnOption) {
	ctx := testutil.Context(t, time.Minute)
	start := time.Now()
	more := func() bool {
		took := time.Since(start)
		return ctx.Err() == nil && took < listAppendMaxRun &&
			(took < listAppendRun || w.committed.Load() < listAppendMinCommitted)
	}
	var wg sync.WaitGroup
	for i, r := range routers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(i)))
			for more() {
				w.one(ctx, t, r, rng, opts)
			}
		}()
	}
	wg.Wait()
	final := txncheck.Txn{ID: int(w.nextID.Add(1)), Outcome: txncheck.Committed}
	tx, err := routers[0].Txn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range w.keys {
		res, err := tx.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		final.Ops = append(final.Ops, txncheck.ReadOp(w.names[i], decodeList(t, res)...))
	}
	if final.Commit, err = tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	final.Start = mustStart(t, tx)
	w.record(final)
}

// one runs one random transaction and records it.
func (w *listAppendWorkload) one(ctx context.Context, t *testing.T, r *Client, rng *rand.Rand, opts []TxnOption) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tx, err := r.Txn(ctx, opts...)
	if err != nil {
		t.Errorf("start a transaction: %v", err)
		return
	}
	rec := txncheck.Txn{ID: int(w.nextID.Add(1))}
	for range 1 + rng.IntN(4) {
		k := rng.IntN(len(w.keys))
		res, err := tx.Get(ctx, w.keys[k])
		if err != nil {
			// Nothing was sent for commit: it wrote nothing.
			t.Logf("T%d: read %s: %v", rec.ID, w.names[k], err)
			_ = tx.Rollback(ctx)
			rec.Outcome = txncheck.Aborted
			w.record(rec)
			return
		}
		// Set by the first read, which fetched it.
		if rec.Start, err = tx.Start(ctx); err != nil {
			t.Errorf("T%d: start after a read: %v", rec.ID, err)
			_ = tx.Rollback(ctx)
			rec.Outcome = txncheck.Aborted
			w.record(rec)
			return
		}
		list := decodeList(t, res)
		if rng.IntN(2) == 0 {
			rec.Ops = append(rec.Ops, txncheck.ReadOp(w.names[k], list...))
			continue
		}
		v := int(w.nextValue.Add(1))
		if err := tx.Put(w.keys[k], encodeList(append(list, v))); err != nil {
			t.Errorf("T%d: buffer a put: %v", rec.ID, err)
		}
		rec.Ops = append(rec.Ops, txncheck.AppendOp(w.names[k], v))
	}
	rec.Commit, err = tx.Commit(ctx)
	switch {
	case err == nil:
		rec.Outcome = txncheck.Committed
		w.committed.Add(1)
	case errors.Is(err, ErrConflict):
		rec.Outcome = txncheck.Aborted
	default: // ErrAmbiguous, or a deadline: the outcome is unknown
		t.Logf("T%d: commit: %v", rec.ID, err)
		rec.Outcome, rec.Commit = txncheck.Unknown, 0
	}
	w.record(rec)
}

func encodeList(l []int) []byte {
	parts := make([]string, len(l))
	for i, v := range l {
		parts[i] = strconv.Itoa(v)
	}
	return []byte(strings.Join(parts, ","))
}

func decodeList(t *testing.T, res GetResult) []int {
	if !res.Found || len(res.KV.Value) == 0 {
		return nil
	}
	var l []int
	for _, p := range strings.Split(string(res.KV.Value), ",") {
		v, err := strconv.Atoi(p)
		if err != nil {
			t.Errorf("%q holds %q, not a list: %v", res.KV.Key, res.KV.Value, err)
			return nil
		}
		l = append(l, v)
	}
	return l
}

// assertPlantedAbortCaught shows the check able to fail on this very
// history: a committed transaction whose append another read, turned
// into an aborted one, must be reported as G1a.
func assertPlantedAbortCaught(t *testing.T, h []txncheck.Txn) {
	t.Helper()
	readBy := map[string]map[int]int{} // key → value → a reader's ID
	for _, tx := range h {
		for _, op := range tx.Ops {
			if op.Kind == txncheck.Read && tx.Outcome == txncheck.Committed {
				if readBy[op.Key] == nil {
					readBy[op.Key] = map[int]int{}
				}
				for _, v := range op.List {
					readBy[op.Key][v] = tx.ID
				}
			}
		}
	}
	for i, tx := range h {
		for _, op := range tx.Ops {
			if reader, ok := readBy[op.Key][op.Value]; !ok || op.Kind != txncheck.Append || tx.Outcome != txncheck.Committed || reader == tx.ID {
				continue
			}
			planted := slices.Clone(h)
			planted[i].Outcome = txncheck.Aborted
			res, err := txncheck.Check(planted)
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range res.Violations(txncheck.SnapshotIsolation) {
				if a.Kind == txncheck.G1a {
					return
				}
			}
			t.Fatalf("T%d marked aborted, yet no G1a: %v", tx.ID, res.Anomalies)
		}
	}
	t.Fatal("no committed append read by another transaction to plant an aborted read on")
}
