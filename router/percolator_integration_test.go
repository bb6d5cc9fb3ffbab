package router

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/internal/testutil"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// TestTxnAcrossShards: one transaction writes a key on each of four
// shards; all its writes carry its commit revision, a read just below
// sees none of them, and a conflicting transaction fails whole.
func TestTxnAcrossShards(t *testing.T) {
	c := newOracleCluster(t, 3, 4)
	r := c.client(nil)
	ctx := testutil.Context(t, time.Minute)
	for i := 1; i <= 4; i++ {
		if err := r.Put(ctx, c.keyIn(i, "k"), []byte("old")); err != nil {
			t.Fatal(err)
		}
	}
	tx, err := r.Txn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The loser starts now too (its read takes its start), and will
	// write one of the same keys: a lost update, were both to commit.
	loser, err := r.Txn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := loser.Get(ctx, c.keyIn(3, "k")); err != nil || string(got.KV.Value) != "old" {
		t.Fatalf("the loser's read: %+v, %v", got, err)
	}
	// A transaction that reads nothing has no snapshot to lose: it
	// commits after the winner, over its write.
	blind, err := r.Txn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		if err := tx.Put(c.keyIn(i, "k"), []byte("new"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Delete(c.keyIn(4, "k")); err != nil {
		t.Fatal(err)
	}
	// The transaction reads its own writes, and the rest at its start.
	if got, err := tx.Get(ctx, c.keyIn(2, "k")); err != nil || string(got.KV.Value) != "new2" {
		t.Fatalf("own write: %+v, %v", got, err)
	}
	if got, err := tx.Get(ctx, c.keyIn(1, "other")); err != nil || got.Found {
		t.Fatalf("absent key: %+v, %v", got, err)
	}
	rev, err := tx.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 4; i++ {
		at, err := r.GetAt(ctx, c.keyIn(i, "k"), rev)
		if err != nil {
			t.Fatal(err)
		}
		if i == 4 {
			if at.Found {
				t.Errorf("shard 4's key survived the delete: %+v", at.KV)
			}
		} else if string(at.KV.Value) != "new"+strconv.Itoa(i) || at.KV.ModRevision != rev {
			t.Errorf("shard %d at the commit %d: %q at %d", i, rev, at.KV.Value, at.KV.ModRevision)
		}
		before, err := r.GetAt(ctx, c.keyIn(i, "k"), rev-1)
		if err != nil || string(before.KV.Value) != "old" {
			t.Errorf("shard %d just below the commit: %+v, %v", i, before, err)
		}
	}
	// The loser wrote a key the winner wrote after the loser started.
	if err := loser.Put(c.keyIn(1, "fresh"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := loser.Put(c.keyIn(3, "k"), []byte("lost")); err != nil {
		t.Fatal(err)
	}
	if _, err := loser.Commit(ctx); !errors.Is(err, ErrConflict) {
		t.Fatalf("conflicting commit: %v", err)
	}
	for _, k := range [][]byte{c.keyIn(2, "k"), c.keyIn(2, "blind")} {
		if err := blind.Put(k, []byte("blind")); err != nil {
			t.Fatal(err)
		}
	}
	brev, err := blind.Commit(ctx)
	if err != nil || brev <= rev {
		t.Fatalf("a blind one-shard commit after the winner's at %d: %d, %v", rev, brev, err)
	}
	if got, err := r.GetAt(ctx, c.keyIn(2, "k"), 0); err != nil || string(got.KV.Value) != "blind" || got.KV.ModRevision != brev {
		t.Fatalf("after the blind commit at %d: %+v, %v", brev, got.KV, err)
	}
	if got, err := r.GetAt(ctx, c.keyIn(1, "fresh"), 0); err != nil || got.Found {
		t.Fatalf("a failed transaction's other write is visible: %+v, %v", got, err)
	}
	if _, err := loser.Commit(ctx); !errors.Is(err, errTxnDone) {
		t.Fatalf("second commit: %v", err)
	}
}

// TestTxnLocksOfAGoneClient: a client that prewrote and went away; its
// locks stop readers until their TTL runs out, and the first reader then
// rolls it back. A client that went away after the commit point has its
// other locks rolled forward by the readers.
func TestTxnLocksOfAGoneClient(t *testing.T) {
	c := newOracleCluster(t, 3, 4)
	r := c.client(nil)
	ctx := testutil.Context(t, time.Minute)
	a, b := c.keyIn(1, "a"), c.keyIn(3, "b")
	for _, k := range [][]byte{a, b} {
		if err := r.Put(ctx, k, []byte("0")); err != nil {
			t.Fatal(err)
		}
	}
	muts := []*pb.Mutation{{Op: pb.Mutation_PUT, Key: a, Value: []byte("1")}, {Op: pb.Mutation_PUT, Key: b, Value: []byte("1")}}
	prewriteBoth := func(ttl time.Duration) (start, commit uint64) {
		t.Helper()
		start, err := r.Now(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range muts {
			rev, err := r.prewriteGroup(ctx, &txnMeta{start: start, primary: a, ttl: ttl}, []*pb.Mutation{m})
			if err != nil {
				t.Fatal(err)
			}
			commit = max(commit, rev)
		}
		return start, commit
	}

	// Gone before the commit point: rolled back once the TTL ran out.
	ttl := 500 * time.Millisecond
	began := time.Now()
	prewriteBoth(ttl)
	got, err := r.GetAt(ctx, b, 0)
	if err != nil || string(got.KV.Value) != "0" {
		t.Fatalf("read past a rolled-back transaction: %+v, %v", got, err)
	}
	if waited := time.Since(began); waited < ttl/2 {
		t.Fatalf("the reader went past a live lock after %v (TTL %v)", waited, ttl)
	}
	if err := r.Put(ctx, a, []byte("2")); err != nil {
		t.Fatalf("a write after the rollback: %v", err)
	}

	// Gone after the commit point: the primary committed, b rolls forward.
	start, commit := prewriteBoth(time.Minute)
	if err := r.commitKeys(ctx, &txnMeta{start: start, primary: a}, commit, muts, true); err != nil {
		t.Fatal(err)
	}
	got, err = r.GetAt(ctx, b, 0)
	if err != nil || string(got.KV.Value) != "1" || got.KV.ModRevision != commit {
		t.Fatalf("read of a secondary after the commit point: %+v, %v (commit %d)", got.KV, err, commit)
	}
}

// TestTxnWriteSkew: under snapshot isolation two transactions that read
// the same two keys and each write a different one both commit; with
// Serializable the second fails.
func TestTxnWriteSkew(t *testing.T) {
	c := newOracleCluster(t, 3, 4)
	r := c.client(nil)
	ctx := testutil.Context(t, time.Minute)
	x, y := c.keyIn(1, "x"), c.keyIn(4, "y")
	for _, serializable := range []bool{false, true} {
		var opts []TxnOption
		if serializable {
			opts = append(opts, Serializable())
		}
		t1, err := r.Txn(ctx, opts...)
		if err != nil {
			t.Fatal(err)
		}
		t2, err := r.Txn(ctx, opts...)
		if err != nil {
			t.Fatal(err)
		}
		for _, tx := range []*Txn{t1, t2} {
			for _, k := range [][]byte{x, y} {
				if _, err := tx.Get(ctx, k); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := t1.Put(x, []byte("1")); err != nil {
			t.Fatal(err)
		}
		if err := t2.Put(y, []byte("1")); err != nil {
			t.Fatal(err)
		}
		if _, err := t1.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		_, err = t2.Commit(ctx)
		if serializable != errors.Is(err, ErrConflict) || !serializable && err != nil {
			t.Fatalf("serializable %v: the second commit: %v", serializable, err)
		}
	}
}

// TestTxnBank moves money between accounts on every shard with
// concurrent transactions, while others read every account in one
// snapshot: every snapshot, and the end, holds the same total.
func TestTxnBank(t *testing.T) { runBank(t, false) }

// TestTxnBankThroughNodeKills is TestTxnBank while each node in turn is
// killed and restarted (a majority of every shard stays up): leaders
// move in the middle of transactions, and a commit may end ambiguous,
// but no snapshot ever sees money made or lost.
func TestTxnBankThroughNodeKills(t *testing.T) {
	if testing.Short() {
		t.Skip("kills nodes")
	}
	runBank(t, true)
}

func runBank(t *testing.T, kills bool) {
	c := newOracleCluster(t, 3, 4)
	r := c.client(nil)
	ctx := testutil.Context(t, 4*time.Minute)
	const accounts, initial = 8, 100
	keys := make([][]byte, accounts)
	for i := range keys {
		keys[i] = c.keyIn(i%4+1, fmt.Sprintf("acct%d", i))
		if err := r.Put(ctx, keys[i], []byte(strconv.Itoa(initial))); err != nil {
			t.Fatal(err)
		}
	}
	balance := func(tx *Txn, k []byte) (int, error) {
		got, err := tx.Get(ctx, k)
		if err != nil {
			return 0, err
		}
		return strconv.Atoi(string(got.KV.Value))
	}
	// transient says whether err is what a call may end with while a node
	// is down (and only then): the shard was between leaders, or the
	// commit point's answer was lost.
	transient := func(err error) bool {
		return kills && (errors.Is(err, ErrAmbiguous) || errors.Is(err, ErrUnavailable) || errors.Is(err, ErrRetriesExhausted))
	}
	var (
		stop                 atomic.Bool
		moved, lost, checked atomic.Int64
		unsure               atomic.Int64
		mu                   sync.Mutex
		failures             []string
		transfers            []string // committed, for a failure's report
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		failures = append(failures, fmt.Sprintf(format, args...))
	}
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	events := r.Watch(wctx, c.keyIn(1, ""), nil)
	var history []string
	var wg sync.WaitGroup
	wg.Go(func() {
		for resp := range events {
			for _, ev := range resp.Events {
				mu.Lock()
				history = append(history, fmt.Sprintf("event %q=%q @%d", ev.KV.Key, ev.KV.Value, ev.KV.ModRevision))
				mu.Unlock()
			}
		}
	})
	for w := range 4 {
		rng := rand.New(rand.NewPCG(uint64(w), 7))
		wg.Go(func() {
			for !stop.Load() {
				from, to := rng.IntN(accounts), rng.IntN(accounts)
				if from == to {
					continue
				}
				tx, err := r.Txn(ctx)
				if transient(err) {
					continue
				}
				if err != nil {
					fail("begin: %v", err)
					return
				}
				a, err1 := balance(tx, keys[from])
				b, err2 := balance(tx, keys[to])
				if err := errors.Join(err1, err2); transient(err) {
					continue
				} else if err != nil {
					fail("transfer read: %v", err)
					return
				}
				amount := rng.IntN(10) + 1
				_ = tx.Put(keys[from], []byte(strconv.Itoa(a-amount)))
				_ = tx.Put(keys[to], []byte(strconv.Itoa(b+amount)))
				rev, err := tx.Commit(ctx)
				mu.Lock()
				transfers = append(transfers, fmt.Sprintf("try start %s: %d %d->%d (%d, %d): %v", startOf(tx), amount, from, to, a, b, err))
				mu.Unlock()
				switch {
				case err == nil:
					moved.Add(1)
					mu.Lock()
					transfers = append(transfers, fmt.Sprintf("@%d start %s: %d %d->%d (%d, %d)", rev, startOf(tx), amount, from, to, a, b))
					mu.Unlock()
				case errors.Is(err, ErrConflict) && !errors.Is(err, ErrAmbiguous):
					lost.Add(1)
				case transient(err):
					unsure.Add(1)
				default:
					fail("transfer commit: %v", err)
					return
				}
			}
		})
	}
	audit := func() error {
		tx, err := r.Txn(ctx)
		if err != nil {
			return err
		}
		total := 0
		for _, k := range keys {
			b, err := balance(tx, k)
			if err != nil {
				return err
			}
			total += b
		}
		if total != accounts*initial {
			return fmt.Errorf("a snapshot at %s holds %d, want %d", startOf(tx), total, accounts*initial)
		}
		checked.Add(1)
		return nil
	}
	for range 2 {
		wg.Go(func() {
			for !stop.Load() {
				if err := audit(); err != nil && !transient(err) {
					fail("audit: %v", err)
					return
				}
			}
		})
	}
	progress := func(what string) {
		t.Helper()
		m0, c0 := moved.Load(), checked.Load()
		testutil.Eventually(t, time.Minute, func() error {
			if moved.Load() < m0+50 || checked.Load() < c0+10 {
				return fmt.Errorf("%s: %d transfers (%d conflicts, %d unsure), %d audits so far", what, moved.Load(), lost.Load(), unsure.Load(), checked.Load())
			}
			return nil
		})
	}
	progress("before any kill")
	if kills {
		for _, id := range c.nodes {
			c.f.Nodes[id].Kill()
			progress(fmt.Sprintf("node %d down", id))
			c.f.Nodes[id].Restart()
			progress(fmt.Sprintf("node %d back", id))
		}
	}
	stop.Store(true)
	stopWatch()
	wg.Wait()
	for _, f := range failures {
		t.Error(f)
	}
	if err := audit(); err != nil {
		for i, k := range keys {
			got, gerr := r.GetAt(ctx, k, 0)
			t.Logf("account %d (%q): %q at %d, %v", i, k, got.KV.Value, got.KV.ModRevision, gerr)
		}
		for _, tr := range transfers {
			t.Log(tr)
		}
		for _, h := range history {
			t.Log(h)
		}
		t.Fatal(err)
	}
	t.Logf("%d transfers committed, %d conflicts, %d of unknown outcome, %d audits", moved.Load(), lost.Load(), unsure.Load(), checked.Load())
}

// mustStart returns tx's start revision, which its reads or commit took,
// failing the test if there is none to be had.
func mustStart(t testing.TB, tx *Txn) uint64 {
	t.Helper()
	start, err := tx.Start(t.Context())
	if err != nil {
		t.Fatalf("the transaction's start: %v", err)
	}
	return start
}

// startOf formats tx's start revision for a log line, or why there is
// none.
func startOf(tx *Txn) string {
	start, err := tx.Start(context.Background())
	if err != nil {
		return fmt.Sprintf("unknown (%v)", err)
	}
	return strconv.FormatUint(start, 10)
}

// TestTxnStartReportsFetchFailure: Start asked before any read fetches
// the start revision; a fetch that fails is an error, not a 0 that reads
// like a revision, and sets nothing, so the next call fetches again, and
// the transaction's reads use what it fetched.
func TestTxnStartReportsFetchFailure(t *testing.T) {
	c := newOracleCluster(t, 1, 1)
	r := c.client(nil)
	ctx := t.Context()
	before, err := r.PutRev(ctx, []byte("k"), []byte("before"))
	if err != nil {
		t.Fatal(err)
	}
	tx, err := r.Txn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dead, cancel := context.WithCancel(ctx)
	cancel()
	if start, err := tx.Start(dead); err == nil || start != 0 {
		t.Fatalf("Start with its fetch failing = %d, %v; want 0 and an error", start, err)
	}
	start, err := tx.Start(ctx)
	if err != nil || start <= before.Revision {
		t.Fatalf("Start = %d, %v; want a revision above the put's %d", start, err, before.Revision)
	}
	if err := r.Put(ctx, []byte("k"), []byte("after")); err != nil {
		t.Fatal(err)
	}
	got, err := tx.Get(ctx, []byte("k"))
	if err != nil || string(got.KV.Value) != "before" {
		t.Fatalf("the transaction's read = %q, %v; want the value at its start, before", got.KV.Value, err)
	}
	if again, err := tx.Start(ctx); err != nil || again != start {
		t.Fatalf("Start after the read = %d, %v; want %d", again, err, start)
	}
	_ = tx.Rollback(ctx)
}
