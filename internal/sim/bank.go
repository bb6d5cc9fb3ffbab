package sim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"

	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/shard"
)

// The bank (shard backend, engine and fleet runs, with leases on):
// transactions across shards under the run's faults. bankAccounts
// accounts, each opened with bankOpening, live at bankKey: in engine runs
// on bankGroups groups of their own (IDs bankGroupBase+1...), which the
// simulator never splits, transfers or reconfigures; in fleet runs on
// placement's shards, which split and move. bankClients actors (no
// process: no crash or partition reaches them) run a small Percolator
// coordinator over the shard commands, as router/percolator.go does:
//
//   - a transfer takes a start revision S from the run's oracle, reads
//     both balances at S, and writes both: if the two keys are on one
//     shard, one KindPrewrite with OnePhase (carrying a client ID, so a
//     retry after an ambiguous answer applies at most once); otherwise a
//     prewrite of each key (primary: the lower key), commit revision C =
//     the highest prewrite revision, a KindCommitTxn of the primary (the
//     commit point), then of the secondary;
//   - an audit reads every account at one start revision;
//   - a read or prewrite that meets a lock (*shard.LockedError) resolves
//     it: KindCheckTxn on the lock's primary with a fresh timestamp
//     (rolling back a primary whose TTL ran out), then KindCommitTxn or
//     KindRollbackTxn of the locked key, or a short wait while the
//     transaction is pending;
//   - one transfer in eight of two phases "crashes": its coordinator
//     stops after the prewrites, or after the primary's commit, and
//     readers must resolve its locks (forward or back).
//
// bankcheck.go checks the audits, the final state and every account's
// version history against the coordinators' records.
const (
	bankAccounts = 12
	bankGroups   = 4
	bankClients  = 3
	bankOpening  = 100
	// bankTTL is the locks' TTL in milliseconds of the oracle: steps.
	bankTTL = 80
	// bankCallTimeout bounds each transfer's or audit's calls.
	bankCallTimeout = 400 * leaseStep
	// bankClientBase is the client ID of bank client 0's one-phase
	// commits (far above the simulator's clients' IDs).
	bankClientBase = 1 << 40
)

// bankGroupBase + 1 ... + bankGroups are the bank's groups in engine runs.
const bankGroupBase multiraft.GroupID = 9100

// bankKey is account i's key: above leaseKeysStart (the watch sessions
// stay below it) and below the leased keys.
func bankKey(i int) string { return fmt.Sprintf("\xfeB%d/a%02d", i%bankGroups, i) }

// bankGroupSpan is the key span of engine-run bank group g (1-based).
func bankGroupSpan(g int) (start, end []byte) {
	return []byte(fmt.Sprintf("\xfeB%d", g-1)), []byte(fmt.Sprintf("\xfeB%d", g))
}

// transferOutcome is how a transfer ended as its coordinator saw it.
type transferOutcome int

const (
	// txRunning: not ended (the run ended first).
	txRunning transferOutcome = iota
	// txCommitted: committed at commit (acknowledged).
	txCommitted
	// txConflict: refused (a write conflict, a lock it could not
	// resolve, or rolled back by a resolver before its commit point);
	// nothing of it applied.
	txConflict
	// txAbandoned: gave up before any prewrite could have applied.
	txAbandoned
	// txUnknown: its commit point's outcome is unknown; it applied at
	// commit entirely or not at all.
	txUnknown
	// txCrashPrewritten: its coordinator stopped after the prewrites: it
	// must be rolled back by the resolvers.
	txCrashPrewritten
	// txCrashCommitted: its coordinator stopped after the primary's
	// commit: it must be rolled forward by the resolvers.
	txCrashCommitted
)

func (o transferOutcome) String() string {
	return [...]string{"running", "committed", "conflict", "abandoned", "unknown", "crashed after prewrite", "crashed after commit point"}[o]
}

// bankTransfer is one transfer as its coordinator saw it.
type bankTransfer struct {
	id       int
	from, to int
	amount   int
	start    uint64
	// read: the balances read at start.
	readFrom, readTo int
	// onePhase: committed (or tried) in one command; revs are the
	// revisions its attempts were stamped with (one applied at most).
	onePhase bool
	revs     []uint64
	// commit: the commit revision of two phases (0: none computed).
	commit  uint64
	outcome transferOutcome
}

// delta is what t does to account a.
func (t *bankTransfer) delta(a int) int {
	switch a {
	case t.from:
		return -t.amount
	case t.to:
		return t.amount
	}
	return 0
}

// bankAudit is one audit: every account read at start.
type bankAudit struct {
	client   int
	start    uint64
	balances []int
}

// bankState is the bank of a run: the coordinators' records and the
// samples of the accounts' versions (bankcheck.go).
type bankState struct {
	s         *simulation
	rng       *rand.Rand
	transfers []*bankTransfer
	audits    []bankAudit
	// initRevs: the revisions the opening deposits were stamped with.
	initRevs map[uint64]bool
	opened   bool
	seq      []uint64 // per client: the last one-phase sequence number
	// versions: every version of every account the samples found, by
	// account and revision (the balance).
	versions []map[uint64]int
	// final: the balances read after every lock was resolved (nil: not
	// read).
	final []int
	// running counts the bank clients not yet done (clientsBusy).
	running int
	stats   bankStats
}

type bankStats struct {
	committed, onePhase, conflicts, unknown, abandoned, crashed, resolved, rolledBack, waited, audits int
}

func newBankState(s *simulation) *bankState {
	b := &bankState{
		s: s, rng: rand.New(rand.NewPCG(s.cfg.Seed^0x62616e6b, s.cfg.Seed+0xba4c)),
		initRevs: map[uint64]bool{}, seq: make([]uint64, bankClients),
	}
	for range bankAccounts {
		b.versions = append(b.versions, map[uint64]int{})
	}
	return b
}

// errBankGiveUp: a bank call ran out of time or attempts.
var errBankGiveUp = errors.New("sim: bank call gave up")

// txnAnswer reports whether err is an answer about the transaction (as
// opposed to a failure to get one).
func txnAnswer(err error) bool {
	return errors.Is(err, shard.ErrLocked) || errors.Is(err, shard.ErrWriteConflict) || errors.Is(err, shard.ErrTxnAborted) ||
		errors.Is(err, shard.ErrTxnCommitted) || errors.Is(err, shard.ErrBadCommand) || compacted(err)
}

// compacted reports whether err refuses a read below the compaction
// point.
func compacted(err error) bool {
	var ce *shard.CompactedError
	return errors.As(err, &ce)
}

// bankExec runs cmd on the shard owning key, at its leader, until it is
// answered or ctx ends: every failure other than an answer about the
// transaction is retried (the transaction commands are idempotent, and a
// one-phase commit carries a client ID). Every revision an attempt was
// stamped with is appended to revs, if not nil.
func (s *simulation) bankExec(ctx context.Context, key string, cmd shard.Command, revs *[]uint64) (*shard.Result, error) {
	var last error
	for attempt := 0; ctx.Err() == nil; attempt++ {
		if attempt > 0 {
			s.leaseSleep(3 + s.bank.rng.IntN(5))
		}
		id, to, err := leaseFleet{s: s}.route([]byte(key))
		if err != nil {
			last = err
			continue
		}
		n, err := leaseStore{n: to}.live()
		if err != nil {
			last = err
			continue
		}
		if err := n.e.CheckLeader(id); err != nil {
			last = err
			continue
		}
		c := cmd
		if c.Kind == shard.KindPrewrite {
			// Only a prewrite is stamped like a write.
			c.Revision = s.sm.(*shardBackend).nextRevision()
			if revs != nil {
				*revs = append(*revs, c.Revision)
			}
		}
		v, err := s.actors.wait(ctx, n.e.ProposeFuture(id, c.AppendEncoded(nil)))
		if err == nil {
			switch r := v.(type) {
			case *shard.Result:
				return r, nil
			case error:
				err = r
			default:
				err = fmt.Errorf("sim: unexpected result %T", v)
			}
		}
		if txnAnswer(err) {
			return nil, err
		}
		last = err
	}
	return nil, fmt.Errorf("%w: %q: %w", errBankGiveUp, key, last)
}

// bankGet reads key at rev, resolving the locks it meets.
func (s *simulation) bankGet(ctx context.Context, key string, rev uint64) (int, error) {
	var last error
	for attempt := 0; ctx.Err() == nil; attempt++ {
		if attempt > 0 {
			s.leaseSleep(3 + s.bank.rng.IntN(5))
		}
		id, to, err := leaseFleet{s: s}.route([]byte(key))
		if err != nil {
			last = err
			continue
		}
		var kv shard.KeyValue
		var found bool
		if s.cfg.bug == bugBankReadsIgnoreLocks {
			kv, found, err = s.bankReadIgnoringLocks(ctx, to, id, key, rev)
		} else {
			kv, found, err = leaseStore{n: to}.GetAt(ctx, id, shard.Epoch{}, []byte(key), rev)
		}
		var le *shard.LockedError
		switch {
		case errors.As(err, &le):
			s.bankResolve(ctx, &le.Lock)
			continue
		case compacted(err):
			return 0, err
		case err != nil:
			last = err
			continue
		case !found:
			return 0, fmt.Errorf("sim: bank: %q not found at %d", key, rev)
		}
		bal, err := strconv.Atoi(string(kv.Value))
		if err != nil {
			panic(fmt.Sprintf("sim: bank: %q holds %q", key, kv.Value))
		}
		return bal, nil
	}
	return 0, fmt.Errorf("%w: read %q: %w", errBankGiveUp, key, last)
}

// bankResolve resolves lock l: asks its primary for the transaction's
// outcome (with a fresh timestamp, against which its TTL is judged),
// then commits or rolls back l's key, or waits a little if the
// transaction may still commit.
func (s *simulation) bankResolve(ctx context.Context, l *shard.TxnLock) {
	st := s.bank
	res, err := s.bankExec(ctx, string(l.Primary), shard.Command{Kind: shard.KindCheckTxn,
		Step: &shard.TxnStep{Start: l.Start, Primary: l.Primary, Now: s.sm.(*shardBackend).nextRevision()}}, nil)
	if err != nil {
		s.tracef("bank: check %d (primary %q): %v", l.Start, l.Primary, err)
		return
	}
	switch res.Status {
	case shard.TxnPending:
		st.stats.waited++
		s.leaseSleep(5)
	case shard.TxnCommitted:
		cmd := shard.Command{Kind: shard.KindCommitTxn, Step: &shard.TxnStep{Start: l.Start, Primary: l.Primary, Commit: res.Revision, Keys: [][]byte{l.Key}}}
		if s.cfg.bug == bugBankResolverRollsBackCommitted && string(l.Key) != string(l.Primary) {
			cmd = shard.Command{Kind: shard.KindRollbackTxn, Step: &shard.TxnStep{Start: l.Start, Primary: l.Primary, Keys: [][]byte{l.Key}}}
		}
		if _, err := s.bankExec(ctx, string(l.Key), cmd, nil); err == nil {
			st.stats.resolved++
		}
	case shard.TxnRolledBack:
		if _, err := s.bankExec(ctx, string(l.Key), shard.Command{Kind: shard.KindRollbackTxn,
			Step: &shard.TxnStep{Start: l.Start, Primary: l.Primary, Keys: [][]byte{l.Key}}}, nil); err == nil {
			st.stats.rolledBack++
		}
	}
}

// startBankClients starts the bank's opening and its clients.
func (s *simulation) startBankClients() {
	if s.bank == nil {
		return
	}
	s.actors.spawn(nil, "bank opening", s.openBank)
	st := s.bank
	st.running = bankClients
	for c := range bankClients {
		s.actors.spawn(nil, fmt.Sprintf("bank client %d", c), func() { s.runBankClient(c) })
	}
}

// openBank deposits bankOpening in every account, in one-phase
// transactions of one key (a retry after an ambiguous answer meets the
// deposit as a conflict, or carries the same client sequence).
func (s *simulation) openBank() {
	st := s.bank
	for i := range bankAccounts {
		for {
			ctx, cancel := leaseRuntime{as: s.actors}.WithTimeout(context.Background(), bankCallTimeout)
			var revs []uint64
			start := s.sm.(*shardBackend).nextRevision()
			_, err := s.bankExec(ctx, bankKey(i), shard.Command{
				Header: shard.Header{ClientID: bankClientBase + bankClients, Seq: uint64(i + 1)},
				Kind:   shard.KindPrewrite,
				Step: &shard.TxnStep{Start: start, Primary: []byte(bankKey(i)), TTL: bankTTL, OnePhase: true,
					Mutations: []shard.Mutation{{Op: shard.MutationPut, Key: []byte(bankKey(i)), Value: []byte(strconv.Itoa(bankOpening))}}},
			}, &revs)
			cancel()
			for _, r := range revs {
				st.initRevs[r] = true
			}
			if err == nil || errors.Is(err, shard.ErrWriteConflict) {
				break
			}
			s.tracef("bank: opening %d: %v", i, err)
		}
	}
	st.opened = true
}

func (s *simulation) runBankClient(c int) {
	st := s.bank
	defer func() { st.running-- }()
	s.actors.park(func() bool { return st.opened || !s.workloadOn() })
	for s.workloadOn() {
		if st.rng.IntN(5) == 0 {
			s.bankAudit(c)
		} else {
			s.bankTransfer(c)
		}
		s.leaseSleep(1 + st.rng.IntN(10))
	}
}

// bankAudit reads every account at one fresh start revision.
func (s *simulation) bankAudit(c int) {
	st := s.bank
	ctx, cancel := leaseRuntime{as: s.actors}.WithTimeout(context.Background(), bankCallTimeout)
	defer cancel()
	a := bankAudit{client: c, start: s.sm.(*shardBackend).nextRevision()}
	for i := range bankAccounts {
		bal, err := s.bankGet(ctx, bankKey(i), a.start)
		if err != nil {
			s.tracef("bank: audit at %d: %v", a.start, err)
			return
		}
		a.balances = append(a.balances, bal)
	}
	st.audits = append(st.audits, a)
	st.stats.audits++
}

// bankTransfer moves a random amount between two random accounts.
func (s *simulation) bankTransfer(c int) {
	st := s.bank
	t := &bankTransfer{id: len(st.transfers), from: st.rng.IntN(bankAccounts), amount: 1 + st.rng.IntN(20)}
	t.to = (t.from + 1 + st.rng.IntN(bankAccounts-1)) % bankAccounts
	crash := st.rng.IntN(16) // 0: after the prewrites, 1: after the commit point
	st.transfers = append(st.transfers, t)
	ctx, cancel := leaseRuntime{as: s.actors}.WithTimeout(context.Background(), bankCallTimeout)
	defer cancel()
	t.start = s.sm.(*shardBackend).nextRevision()
	var err error
	if t.readFrom, err = s.bankGet(ctx, bankKey(t.from), t.start); err == nil {
		t.readTo, err = s.bankGet(ctx, bankKey(t.to), t.start)
	}
	if err != nil {
		t.outcome = txAbandoned
		st.stats.abandoned++
		return
	}
	start := t.start
	if s.cfg.bug == bugBankNoWriteConflict {
		// The prewrite checks for writes after a later start than the
		// reads': writes in between go unnoticed (lost updates).
		s.leaseSleep(10)
		start = s.sm.(*shardBackend).nextRevision()
	}
	muts := []shard.Mutation{
		{Op: shard.MutationPut, Key: []byte(bankKey(t.from)), Value: []byte(strconv.Itoa(t.readFrom - t.amount))},
		{Op: shard.MutationPut, Key: []byte(bankKey(t.to)), Value: []byte(strconv.Itoa(t.readTo + t.amount))},
	}
	slices.SortFunc(muts, func(a, b shard.Mutation) int { return bytes.Compare(a.Key, b.Key) })
	primary := muts[0].Key
	step := func(kind shard.CommandKind, commit uint64, key []byte) *shard.Command {
		return &shard.Command{Kind: kind, Step: &shard.TxnStep{Start: start, Primary: primary, Commit: commit, Keys: [][]byte{key}}}
	}
	rollback := func() {
		rctx, rcancel := leaseRuntime{as: s.actors}.WithTimeout(context.Background(), bankCallTimeout)
		defer rcancel()
		for _, m := range muts {
			if _, err := s.bankExec(rctx, string(m.Key), *step(shard.KindRollbackTxn, 0, m.Key), nil); err != nil {
				return
			}
		}
	}
	// One shard: one command.
	g0, _, err0 := leaseFleet{s: s}.route(muts[0].Key)
	g1, _, err1 := leaseFleet{s: s}.route(muts[1].Key)
	if err0 == nil && err1 == nil && g0 == g1 {
		t.onePhase = true
		for attempt := 0; attempt < 3; attempt++ {
			st.seq[c]++
			_, err = s.bankExec(ctx, string(primary), shard.Command{
				Header: shard.Header{ClientID: bankClientBase + uint64(c), Seq: st.seq[c]}, Kind: shard.KindPrewrite,
				Step: &shard.TxnStep{Start: start, Primary: primary, TTL: bankTTL, OnePhase: true, Mutations: muts}}, &t.revs)
			var le *shard.LockedError
			if errors.As(err, &le) {
				s.bankResolve(ctx, &le.Lock)
				continue
			}
			break
		}
		switch {
		case err == nil:
			t.outcome = txCommitted
			st.stats.committed++
			st.stats.onePhase++
		case errors.Is(err, errBankGiveUp):
			// Among others, a split that moved one key away: every retry
			// is refused, but an earlier attempt may have applied.
			t.outcome = txUnknown
			st.stats.unknown++
		default:
			t.outcome = txConflict
			st.stats.conflicts++
		}
		s.tracef("bank: transfer %d one phase: %s (%v)", t.id, t.outcome, err)
		return
	}
	// Two phases: prewrite each key.
	for _, m := range muts {
		var res *shard.Result
		for attempt := 0; attempt < 3; attempt++ {
			res, err = s.bankExec(ctx, string(m.Key), shard.Command{Kind: shard.KindPrewrite,
				Step: &shard.TxnStep{Start: start, Primary: primary, TTL: bankTTL, Mutations: []shard.Mutation{m}}}, nil)
			var le *shard.LockedError
			if errors.As(err, &le) {
				s.bankResolve(ctx, &le.Lock)
				continue
			}
			break
		}
		if err != nil {
			// Nothing committed: roll back what may have been locked
			// (a resolver would, once the TTL ran out).
			t.outcome = txConflict
			st.stats.conflicts++
			s.tracef("bank: transfer %d prewrite: %v", t.id, err)
			rollback()
			return
		}
		t.commit = max(t.commit, res.Revision)
	}
	if crash == 0 {
		t.outcome = txCrashPrewritten
		st.stats.crashed++
		return
	}
	_, err = s.bankExec(ctx, string(primary), *step(shard.KindCommitTxn, t.commit, primary), nil)
	switch {
	case err == nil:
	case errors.Is(err, shard.ErrTxnAborted):
		t.outcome = txConflict
		st.stats.conflicts++
		rollback()
		return
	default:
		t.outcome = txUnknown
		st.stats.unknown++
		s.tracef("bank: transfer %d commit point: %v", t.id, err)
		return
	}
	if crash == 1 {
		t.outcome = txCrashCommitted
		st.stats.crashed++
		return
	}
	t.outcome = txCommitted
	st.stats.committed++
	_, _ = s.bankExec(ctx, string(muts[1].Key), *step(shard.KindCommitTxn, t.commit, muts[1].Key), nil)
}

// bankReadIgnoringLocks reads key at rev straight from n's Pebble once
// the replica applied past rev, ignoring locks (bugBankReadsIgnoreLocks).
func (s *simulation) bankReadIgnoringLocks(ctx context.Context, n *node, id shard.ShardID, key string, rev uint64) (shard.KeyValue, bool, error) {
	ls := leaseStore{n: n}
	if err := ls.barrier(ctx, id, multiraft.ReadLinearizable); err != nil {
		return shard.KeyValue{}, false, err
	}
	live, err := ls.live()
	if err != nil {
		return shard.KeyValue{}, false, err
	}
	if storedRevision(live.db, id) < rev {
		if _, err := ls.Execute(ctx, id, &shard.Command{Kind: shard.KindResolve}); err != nil {
			return shard.KeyValue{}, false, err
		}
		if live, err = ls.live(); err != nil {
			return shard.KeyValue{}, false, err
		}
	}
	return shard.ReadAt(live.db, []byte(key), rev)
}
