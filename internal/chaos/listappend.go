package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flotilla-kv/flotilla/internal/poll"
	"github.com/flotilla-kv/flotilla/internal/txncheck"
	"github.com/flotilla-kv/flotilla/router"
)

// List-append: Elle's workload through router.Client.Txn, checked by
// internal/txncheck. See "List-append" in doc.go.

// listKeys is the number of list keys of a cycle, one per initial shard.
const listKeys = initialShards

// listAppendKeys returns a cycle's list keys: key j's first byte falls in
// initial shard j, beside the bank's account j.
func listAppendKeys(cycle int) []string {
	keys := make([]string, listKeys)
	for j := range keys {
		keys[j] = string([]byte{byte(j*256/listKeys + 23)}) + fmt.Sprintf("chaos-c%04d-list%02d", cycle, j)
	}
	return keys
}

// cycleLevel returns the isolation level a cycle's list-append runs at:
// snapshot isolation on even cycles, serializable (Txn with
// router.Serializable) on odd ones.
func cycleLevel(cycle int) txncheck.Level {
	if cycle%2 == 1 {
		return txncheck.Serializable
	}
	return txncheck.SnapshotIsolation
}

// listAppend is a cycle's list-append clients. Its methods are for the
// test goroutine.
type listAppend struct {
	clk   clock
	keys  []string
	names []string // a key's name in the history: "k<j>"
	opts  []router.TxnOption
	stop  atomic.Bool
	wg    sync.WaitGroup
	ids   atomic.Int64
	value atomic.Int64
	// errs counts transactions that could not start (nothing recorded).
	errs atomic.Int64

	mu struct {
		sync.Mutex
		history []txncheck.Txn
	}
}

// startListAppend starts clients goroutines on r at level.
func startListAppend(clk clock, r *router.Client, keys []string, level txncheck.Level, clients int, seed uint64) *listAppend {
	l := &listAppend{clk: clk, keys: keys}
	for j := range keys {
		l.names = append(l.names, "k"+strconv.Itoa(j))
	}
	if level == txncheck.Serializable {
		l.opts = []router.TxnOption{router.Serializable()}
	}
	for i := range clients {
		l.wg.Add(1)
		go l.loop(r, rand.New(rand.NewPCG(seed, 0x6c697374+uint64(i))))
	}
	return l
}

func (l *listAppend) record(t txncheck.Txn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mu.history = append(l.mu.history, t)
}

// halt stops the clients, reads every list in one last transaction
// (retried for up to a minute) so that each key's order is known to its
// end, and returns the history.
func (l *listAppend) halt(r *router.Client) []txncheck.Txn {
	l.stop.Store(true)
	l.wg.Wait()
	_ = poll.Until(context.Background(), time.Minute, 50*time.Millisecond, func(context.Context) error {
		ctx, cancel := context.WithTimeout(context.Background(), bankTxnTimeout)
		defer cancel()
		tx, err := r.Txn(ctx)
		if err != nil {
			return err
		}
		final := txncheck.Txn{ID: int(l.ids.Add(1)), Outcome: txncheck.Committed}
		for j, k := range l.keys {
			res, err := tx.Get(ctx, []byte(k))
			if err != nil {
				return err
			}
			final.Ops = append(final.Ops, txncheck.ReadOp(l.names[j], decodeList(res)...))
		}
		// Taken by the reads: Start fetches nothing.
		if final.Start, err = tx.Start(ctx); err != nil {
			return err
		}
		if final.Commit, err = tx.Commit(ctx); err != nil {
			return err
		}
		l.record(final)
		return nil
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]txncheck.Txn(nil), l.mu.history...)
}

func (l *listAppend) loop(r *router.Client, rng *rand.Rand) {
	defer l.wg.Done()
	for !l.stop.Load() {
		l.one(r, rng)
		time.Sleep(time.Duration(5+rng.IntN(15)) * time.Millisecond) // pace
	}
}

// one runs one transaction of one to four random reads and appends, and
// records it.
func (l *listAppend) one(r *router.Client, rng *rand.Rand) {
	ctx, cancel := context.WithTimeout(context.Background(), bankTxnTimeout)
	defer cancel()
	tx, err := r.Txn(ctx, l.opts...)
	if err != nil {
		l.errs.Add(1)
		return
	}
	rec := txncheck.Txn{ID: int(l.ids.Add(1))}
	for range 1 + rng.IntN(4) {
		k := rng.IntN(len(l.keys))
		res, err := tx.Get(ctx, []byte(l.keys[k]))
		if err != nil {
			// Nothing was sent for commit: it wrote nothing.
			_ = tx.Rollback(ctx)
			rec.Outcome = txncheck.Aborted
			l.record(rec)
			return
		}
		// Set by the first read, which fetched it.
		if rec.Start, err = tx.Start(ctx); err != nil {
			_ = tx.Rollback(ctx)
			rec.Outcome = txncheck.Aborted
			l.record(rec)
			return
		}
		list := decodeList(res)
		if rng.IntN(2) == 0 {
			rec.Ops = append(rec.Ops, txncheck.ReadOp(l.names[k], list...))
			continue
		}
		v := int(l.value.Add(1))
		_ = tx.Put([]byte(l.keys[k]), encodeList(append(list, v)))
		rec.Ops = append(rec.Ops, txncheck.AppendOp(l.names[k], v))
	}
	rec.Commit, err = tx.Commit(ctx)
	switch txnOutcome(err) {
	case OK:
		rec.Outcome = txncheck.Committed
	case Failed:
		rec.Outcome = txncheck.Aborted
	default:
		rec.Outcome, rec.Commit = txncheck.Unknown, 0
	}
	l.record(rec)
}

// encodeList stores a list as comma-separated decimals.
func encodeList(list []int) []byte {
	parts := make([]string, len(list))
	for i, v := range list {
		parts[i] = strconv.Itoa(v)
	}
	return []byte(strings.Join(parts, ","))
}

// decodeList reads a stored list. A value that is not a list decodes to
// the elements it can, plus -1 for each that is not a number: a garbage
// element the checker reports (no transaction appends -1).
func decodeList(res router.GetResult) []int {
	if !res.Found || len(res.KV.Value) == 0 {
		return nil
	}
	var list []int
	for _, p := range strings.Split(string(res.KV.Value), ",") {
		v, err := strconv.Atoi(p)
		if err != nil {
			v = -1
		}
		list = append(list, v)
	}
	return list
}

// TxnReport is the result of checkListAppend.
type TxnReport struct {
	Level                             txncheck.Level
	Txns, Committed, Aborted, Unknown int
	UnknownSeen                       int
	WW, WR, RW                        int
	Allowed                           int // anomalies the level allows (G2 at snapshot isolation)
	Violations                        []string
}

// checkListAppend checks a list-append history at level with txncheck.
// A history txncheck refuses as malformed is a violation too: the
// harness recorded it, so it is the harness's bug or a value the store
// made up.
func checkListAppend(h []txncheck.Txn, level txncheck.Level) TxnReport {
	rep := TxnReport{Level: level, Txns: len(h)}
	res, err := txncheck.Check(h)
	if err != nil {
		rep.Violations = append(rep.Violations, fmt.Sprintf("txn: malformed history: %v", err))
		return rep
	}
	rep.Committed, rep.Aborted, rep.Unknown, rep.UnknownSeen = res.Committed, res.Aborted, res.Unknown, res.UnknownSeen
	rep.WW, rep.WR, rep.RW = res.Edges[txncheck.WW], res.Edges[txncheck.WR], res.Edges[txncheck.RW]
	bad := res.Violations(level)
	rep.Allowed = len(res.Anomalies) - len(bad)
	for _, a := range bad {
		rep.Violations = append(rep.Violations, fmt.Sprintf("txn: forbidden at %s: %s", level, a))
	}
	return rep
}

// plantedAbortCaught shows txncheck able to fail on this very history: a
// committed transaction whose append another transaction read, recorded
// as aborted instead, must be reported as G1a. It returns false only
// when the plant went unnoticed; a history with no such append has
// nothing to plant on.
func plantedAbortCaught(h []txncheck.Txn) bool {
	readBy := map[string]map[int]int{} // key → value → a reader's ID
	for _, t := range h {
		if t.Outcome != txncheck.Committed {
			continue
		}
		for _, op := range t.Ops {
			if op.Kind != txncheck.Read {
				continue
			}
			if readBy[op.Key] == nil {
				readBy[op.Key] = map[int]int{}
			}
			for _, v := range op.List {
				readBy[op.Key][v] = t.ID
			}
		}
	}
	for i, t := range h {
		if t.Outcome != txncheck.Committed {
			continue
		}
		for _, op := range t.Ops {
			if reader, ok := readBy[op.Key][op.Value]; op.Kind != txncheck.Append || !ok || reader == t.ID {
				continue
			}
			planted := slices.Clone(h)
			planted[i].Outcome = txncheck.Aborted
			res, err := txncheck.Check(planted)
			if err != nil {
				return false
			}
			for _, a := range res.Anomalies {
				if a.Kind == txncheck.G1a {
					return true
				}
			}
			return false
		}
	}
	return true
}
