package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flotilla-kv/flotilla/internal/poll"
	"github.com/flotilla-kv/flotilla/router"
)

// The bank: transactions across shards (router.Client.Txn) moving money
// between accounts spread over the shards, and audits reading every
// account in one snapshot. See "The bank" in doc.go; bankcheck.go checks
// the record.

// Shape of a cycle's bank.
const (
	// bankAccounts is the number of accounts, one per initial shard.
	bankAccounts = initialShards
	// bankInitial is every account's balance at the start of a cycle.
	bankInitial = 100
	// bankInitTag names the initial balances' writer in account values.
	bankInitTag = "init"
	// bankTxnTimeout bounds one transfer or audit, start to commit.
	bankTxnTimeout = 10 * time.Second
)

// bankKeys returns a cycle's account keys: account j's first byte falls
// in initial shard j, so a transfer between two accounts spans shards.
func bankKeys(cycle int) []string {
	keys := make([]string, bankAccounts)
	for j := range keys {
		keys[j] = string([]byte{byte(j*256/bankAccounts + 17)}) + fmt.Sprintf("chaos-c%04d-bank%02d", cycle, j)
	}
	return keys
}

// bankValue is an account's stored value: its balance and the tag of the
// transfer that wrote it (bankInitTag for the initial balance). Tags are
// unique in a run, so a value read names its writer.
func bankValue(balance int, tag string) string { return strconv.Itoa(balance) + "/" + tag }

// parseBankValue splits an account's value into balance and tag.
func parseBankValue(v string) (int, string, error) {
	b, tag, ok := strings.Cut(v, "/")
	if !ok || tag == "" {
		return 0, "", fmt.Errorf("chaos: account value %q is not balance/tag", v)
	}
	n, err := strconv.Atoi(b)
	if err != nil {
		return 0, "", fmt.Errorf("chaos: account value %q: %w", v, err)
	}
	return n, tag, nil
}

// BankRead is one account as a transaction read it.
type BankRead struct {
	Balance int
	Tag     string // the writer named by the value
	Rev     uint64 // the value's ModRevision
}

// BankTransfer is one transfer: a transaction that read accounts From and
// To and, when both reads succeeded, wrote From-Amount and To+Amount
// tagged with ID.
type BankTransfer struct {
	ID       string
	Client   int
	From, To int
	Amount   int
	// Read holds what the transaction read of From ([0]) and To ([1]).
	Read [2]BankRead
	// Outcome: OK (committed at Commit), Failed (ErrConflict: nothing
	// written), Unknown (ErrAmbiguous or any other commit error).
	Outcome Outcome
	Start   uint64
	Commit  uint64
	Call    int64
	Return  int64
	Err     string
}

// wrote returns the balance the transfer wrote to account a (one of
// From and To).
func (t BankTransfer) wrote(a int) int {
	if a == t.From {
		return t.Read[0].Balance - t.Amount
	}
	return t.Read[1].Balance + t.Amount
}

// readOf returns what the transfer read of account a (one of From, To).
func (t BankTransfer) readOf(a int) BankRead {
	if a == t.From {
		return t.Read[0]
	}
	return t.Read[1]
}

func (t BankTransfer) String() string {
	s := fmt.Sprintf("%s c%d [%d,%d] start=%d %d: a%d(%d/%s@%d) -> a%d(%d/%s@%d) %s",
		t.ID, t.Client, t.Call, t.Return, t.Start, t.Amount,
		t.From, t.Read[0].Balance, t.Read[0].Tag, t.Read[0].Rev,
		t.To, t.Read[1].Balance, t.Read[1].Tag, t.Read[1].Rev, t.Outcome)
	if t.Outcome == OK {
		s += fmt.Sprintf(" commit=%d", t.Commit)
	}
	if t.Err != "" {
		s += " err=" + t.Err
	}
	return s
}

// BankAudit is a read of every account in one snapshot transaction.
type BankAudit struct {
	Client int
	Start  uint64
	// Final marks the read at the end of the cycle, after the heal.
	Final    bool
	Accounts []BankRead
	Call     int64
	Return   int64
}

func (a BankAudit) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "audit c%d [%d,%d] start=%d", a.Client, a.Call, a.Return, a.Start)
	if a.Final {
		b.WriteString(" final")
	}
	for i, r := range a.Accounts {
		fmt.Fprintf(&b, " a%d=%d/%s@%d", i, r.Balance, r.Tag, r.Rev)
	}
	return b.String()
}

// BankRun is a cycle's bank record.
type BankRun struct {
	Accounts  int
	Initial   int
	Transfers []BankTransfer
	Audits    []BankAudit
	// Setup is set when the initial balances could not be written; the
	// cycle then has no bank.
	Setup string
}

// bank is a cycle's bank clients. Its methods are for the test
// goroutine.
type bank struct {
	clk   clock
	keys  []string
	tag   string // prefix of the cycle's transfer IDs
	stop  atomic.Bool
	wg    sync.WaitGroup
	txnID atomic.Uint64
	// errs counts transfers and audits that ended before their commit
	// (a failed start or read): they wrote nothing and are not recorded.
	errs atomic.Int64

	mu struct {
		sync.Mutex
		transfers []BankTransfer
		audits    []BankAudit
	}
}

// startBank writes the cycle's initial balances through r, then starts
// transfers transfer clients and one auditor on r. The caller owns r.
func startBank(clk clock, r *router.Client, keys []string, transfers int, seed uint64, tag string) (*bank, error) {
	b := &bank{clk: clk, keys: keys, tag: tag}
	for _, k := range keys {
		// A put of the same value is safe to repeat.
		err := poll.Until(context.Background(), 30*time.Second, 100*time.Millisecond, func(ctx context.Context) error {
			return r.Put(ctx, []byte(k), []byte(bankValue(bankInitial, bankInitTag)))
		})
		if err != nil {
			return nil, fmt.Errorf("chaos: bank: initial balance of %q: %w", k, err)
		}
	}
	for i := range transfers {
		b.wg.Add(1)
		go b.transferLoop(i, r, rand.New(rand.NewPCG(seed, 0x62616e6b+uint64(i))))
	}
	b.wg.Add(1)
	go b.auditLoop(transfers, r)
	return b, nil
}

// halt stops the clients, reads every account once more in one snapshot
// (the final audit, retried for up to a minute) and returns the record.
func (b *bank) halt(r *router.Client) BankRun {
	b.stop.Store(true)
	b.wg.Wait()
	var final *BankAudit
	_ = poll.Until(context.Background(), time.Minute, 50*time.Millisecond, func(context.Context) error {
		a, err := b.audit(-1, r)
		if err != nil {
			return err
		}
		a.Final = true
		final = &a
		return nil
	})
	b.mu.Lock()
	defer b.mu.Unlock()
	run := BankRun{Accounts: len(b.keys), Initial: bankInitial, Transfers: append([]BankTransfer(nil), b.mu.transfers...), Audits: append([]BankAudit(nil), b.mu.audits...)}
	if final != nil {
		run.Audits = append(run.Audits, *final)
	}
	return run
}

func (b *bank) transferLoop(id int, r *router.Client, rng *rand.Rand) {
	defer b.wg.Done()
	for !b.stop.Load() {
		from := rng.IntN(len(b.keys))
		to := (from + 1 + rng.IntN(len(b.keys)-1)) % len(b.keys)
		if t, ok := b.transfer(id, r, from, to, 1+rng.IntN(10)); ok {
			b.mu.Lock()
			b.mu.transfers = append(b.mu.transfers, t)
			b.mu.Unlock()
		}
		// Pace the clients: the machine is small and shared.
		time.Sleep(time.Duration(5+rng.IntN(15)) * time.Millisecond)
	}
}

// transfer moves amount from account from to account to in one
// transaction. ok is false when it ended before its commit (nothing was
// written, nothing to record).
func (b *bank) transfer(id int, r *router.Client, from, to, amount int) (BankTransfer, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), bankTxnTimeout)
	defer cancel()
	t := BankTransfer{ID: fmt.Sprintf("%s%d.%d", b.tag, id, b.txnID.Add(1)), Client: id, From: from, To: to, Amount: amount, Call: b.clk.now()}
	tx, err := r.Txn(ctx)
	if err != nil {
		b.errs.Add(1)
		return t, false
	}
	for i, a := range []int{from, to} {
		if t.Read[i], err = readAccount(ctx, tx, b.keys[a]); err != nil {
			_ = tx.Rollback(ctx)
			b.errs.Add(1)
			return t, false
		}
	}
	// The reads took it, so Start fetches nothing; its error is handled
	// all the same, should that ever change.
	if t.Start, err = tx.Start(ctx); err != nil {
		_ = tx.Rollback(ctx)
		b.errs.Add(1)
		return t, false
	}
	_ = tx.Put([]byte(b.keys[from]), []byte(bankValue(t.wrote(from), t.ID)))
	_ = tx.Put([]byte(b.keys[to]), []byte(bankValue(t.wrote(to), t.ID)))
	t.Commit, err = tx.Commit(ctx)
	t.Return = b.clk.now()
	t.Outcome = txnOutcome(err)
	if err != nil {
		t.Err = err.Error()
		t.Commit = 0
	}
	return t, true
}

// txnOutcome classifies a Commit's error: nil is OK; ErrConflict (and
// not ErrAmbiguous) is Failed, since the router documents that nothing
// was written; anything else, ErrAmbiguous, a deadline, an unavailable
// shard, is Unknown: the commit may have taken effect.
func txnOutcome(err error) Outcome {
	switch {
	case err == nil:
		return OK
	case errors.Is(err, router.ErrConflict) && !errors.Is(err, router.ErrAmbiguous):
		return Failed
	}
	return Unknown
}

// readAccount reads one account in tx.
func readAccount(ctx context.Context, tx *router.Txn, key string) (BankRead, error) {
	res, err := tx.Get(ctx, []byte(key))
	if err != nil {
		return BankRead{}, err
	}
	if !res.Found {
		// Recorded as read; the checker reports a garbage value.
		return BankRead{Tag: "absent"}, nil
	}
	bal, tag, err := parseBankValue(string(res.KV.Value))
	if err != nil {
		return BankRead{Tag: "garbage:" + string(res.KV.Value)}, nil
	}
	return BankRead{Balance: bal, Tag: tag, Rev: res.KV.ModRevision}, nil
}

func (b *bank) auditLoop(id int, r *router.Client) {
	defer b.wg.Done()
	for !b.stop.Load() {
		if a, err := b.audit(id, r); err == nil {
			b.mu.Lock()
			b.mu.audits = append(b.mu.audits, a)
			b.mu.Unlock()
		} else {
			b.errs.Add(1)
		}
		time.Sleep(20 * time.Millisecond) // pace: audits read every shard
	}
}

// audit reads every account in one read-only transaction.
func (b *bank) audit(id int, r *router.Client) (BankAudit, error) {
	ctx, cancel := context.WithTimeout(context.Background(), bankTxnTimeout)
	defer cancel()
	a := BankAudit{Client: id, Call: b.clk.now()}
	tx, err := r.Txn(ctx)
	if err != nil {
		return a, err
	}
	for _, k := range b.keys {
		rd, err := readAccount(ctx, tx, k)
		if err != nil {
			_ = tx.Rollback(ctx)
			return a, err
		}
		a.Accounts = append(a.Accounts, rd)
	}
	if a.Start, err = tx.Start(ctx); err != nil { // taken by the reads, as in transfer
		_ = tx.Rollback(ctx)
		return a, err
	}
	// Read-only: Commit sends nothing, but ends the transaction.
	if _, err := tx.Commit(ctx); err != nil {
		return a, err
	}
	a.Return = b.clk.now()
	return a, nil
}
