package sim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

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
// coordinator over the shard commands, as router/percolator.go and
// router/asynccommit.go do:
//
//   - a transfer takes a start revision S from the run's oracle, reads
//     both balances at S, and writes both: if the two keys are on one
//     shard, one KindPrewrite with OnePhase (carrying a client ID, so a
//     retry after an ambiguous answer applies at most once); otherwise
//     in two phases (primary: the lower key), three transfers in four
//     with async commit, one in four without;
//   - async commit: a prewrite of each key with Async, the primary's
//     listing the other key among its Secondaries; once both applied the
//     transfer is committed (the client's answer) at C = the highest
//     prewrite revision, and a KindCommitTxn of the primary, then of the
//     secondary, follows. A coordinator whose prewrite failed or went
//     unanswered records the rollback at the primary first (KindRollbackTxn
//     of the primary): if that is refused (ErrTxnCommitted), a resolver
//     recorded the commit, and the transfer committed at the revision
//     recorded; if its answer is lost too, the outcome is unknown;
//   - without async commit: the prewrites, then a KindCommitTxn of the
//     primary at C (the commit point, the client's answer), then of the
//     secondary;
//   - an audit reads every account at one start revision;
//   - a read or prewrite that meets a lock (*shard.LockedError) resolves
//     it: KindCheckTxn on the lock's primary with a fresh timestamp
//     (rolling back a primary whose TTL ran out), then KindCommitTxn or
//     KindRollbackTxn of the locked key, or a short wait while the
//     transaction is pending. An expired async primary is answered
//     TxnSecondaries: the resolver checks the secondaries it lists
//     (KindCheckTxn with Keys, per shard), records the outcome at the
//     primary (KindCommitTxn at the highest prewrite revision if every
//     key held its lock, else KindRollbackTxn), and takes the record
//     written first, by whoever did, as the outcome (bankDecideAsync, as
//     router's decideAsync);
//   - one transfer in eight of two phases "crashes": without async
//     commit, its coordinator stops after the prewrites (readers must
//     roll it back) or after the primary's commit (readers must roll it
//     forward); with async commit, it stops before or during the
//     secondary's prewrite (before the answer: rolled back or committed,
//     as long as all decide alike), after both prewrites (committed:
//     readers must roll it forward) or after the primary's commit.
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

// bugBankAsyncRollsBackLocked (planted by tests only, beside bugs.go's,
// in the code it breaks): a resolver that decides an expired async
// primary by its secondaries records the rollback even when every key
// held its lock, so an acknowledged transfer is undone.
const bugBankAsyncRollsBackLocked simBug = 1 << 16

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
	// txCrashMidPrewrite (async commit): its coordinator stopped after
	// the primary's prewrite, before the secondary's or while it was on
	// its way: the resolvers may roll it forward (the secondary's
	// prewrite applied) or back, at one of the revisions its prewrites
	// could commit at.
	txCrashMidPrewrite
)

func (o transferOutcome) String() string {
	return [...]string{"running", "committed", "conflict", "abandoned", "unknown", "crashed after prewrite", "crashed after commit point", "crashed during prewrite"}[o]
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
	// commit: the commit revision of two phases (0: none known).
	commit uint64
	// async: two phases with async commit; prewrites are the revisions
	// the attempts of its prewrite of each key (primary first) were
	// stamped with, which decide its commit revision if the coordinator
	// does not know it (asyncCommits).
	async     bool
	prewrites [2][]uint64
	outcome   transferOutcome
}

// commitRevs returns the revisions t may have committed at: its
// one-phase attempts', its commit revision if known, and for async
// commit, whose outcome may be decided without its coordinator, every
// revision its prewrites could make the commit revision (asyncCommits).
func (t *bankTransfer) commitRevs() []uint64 {
	switch {
	case t.onePhase:
		return t.revs
	case t.async && t.outcome != txCommitted:
		return t.asyncCommits()
	case t.commit != 0:
		return []uint64{t.commit}
	}
	return nil
}

// asyncCommits returns the revisions async transfer t may have committed
// at: the highest of two prewrite revisions, one of each key's attempts
// (the one that applied: a retried prewrite keeps the lock it finds).
func (t *bankTransfer) asyncCommits() []uint64 {
	var out []uint64
	for _, p := range t.prewrites[0] {
		for _, q := range t.prewrites[1] {
			out = append(out, max(p, q))
		}
	}
	return out
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
	// Async commit: transfers acknowledged (of committed), those whose
	// coordinator recorded the rollback after a failed prewrite, and
	// outcomes recorded by resolvers that checked the secondaries of an
	// expired primary: committed, rolled back.
	asyncCommitted, asyncRolledBack, asyncDecidedForward, asyncDecidedBack int
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
			last = err
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
// deciding it by its secondaries if it is an expired async primary
// (bankDecideAsync), then commits or rolls back l's key, or waits a
// little if the transaction may still commit.
func (s *simulation) bankResolve(ctx context.Context, l *shard.TxnLock) {
	st := s.bank
	res, err := s.bankCheckPrimary(ctx, l.Start, l.Primary)
	if err != nil {
		s.tracef("bank: check %d (primary %q): %v", l.Start, l.Primary, err)
		return
	}
	status, commit := res.Status, res.Revision
	if status == shard.TxnSecondaries {
		status, commit = s.bankDecideAsync(ctx, l, res.Revision)
	}
	switch status {
	case shard.TxnPending:
		st.stats.waited++
		s.leaseSleep(5)
	case shard.TxnCommitted:
		cmd := shard.Command{Kind: shard.KindCommitTxn, Step: &shard.TxnStep{Start: l.Start, Primary: l.Primary, Commit: commit, Keys: [][]byte{l.Key}}}
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

// bankCheckPrimary asks the primary's shard for the outcome of the
// transaction (start, primary), with a fresh timestamp.
func (s *simulation) bankCheckPrimary(ctx context.Context, start uint64, primary []byte) (*shard.Result, error) {
	return s.bankExec(ctx, string(primary), shard.Command{Kind: shard.KindCheckTxn,
		Step: &shard.TxnStep{Start: start, Primary: primary, Now: s.sm.(*shardBackend).nextRevision()}}, nil)
}

// bankDecideAsync decides the outcome of l's async transaction, whose
// primary lock, prewritten at prewrite, outlived its TTL, as router's
// decideAsync does: it checks the secondaries the primary lock lists,
// one KindCheckTxn with Keys per shard, then records at the primary
// committed (at the highest prewrite revision) if every one held its
// lock, else rolled back. If that record is refused or unanswered, the
// one written first, by whoever did, is the outcome. It answers
// TxnPending when it could not tell (the primary lock gone from the
// replica it read, a check unanswered): the caller waits and asks again.
func (s *simulation) bankDecideAsync(ctx context.Context, l *shard.TxnLock, prewrite uint64) (shard.TxnStatus, uint64) {
	st := s.bank
	secondaries, ok := s.bankAsyncSecondaries(l)
	if !ok {
		return shard.TxnPending, 0
	}
	commit, all := prewrite, true
	groups := map[shard.ShardID][][]byte{}
	var order []shard.ShardID
	for _, k := range secondaries {
		id, _, err := leaseFleet{s: s}.route(k)
		if err != nil {
			return shard.TxnPending, 0
		}
		if _, seen := groups[id]; !seen {
			order = append(order, id)
		}
		groups[id] = append(groups[id], k)
	}
	for _, id := range order {
		keys := groups[id]
		res, err := s.bankExec(ctx, string(keys[0]), shard.Command{Kind: shard.KindCheckTxn,
			Step: &shard.TxnStep{Start: l.Start, Primary: l.Primary, Keys: keys}}, nil)
		if err != nil {
			s.tracef("bank: check of the secondaries %q of %d: %v", keys, l.Start, err)
			return shard.TxnPending, 0
		}
		if res.Status != shard.TxnCommitted {
			all = false
			break
		}
		commit = max(commit, res.Revision)
	}
	step := &shard.TxnStep{Start: l.Start, Primary: l.Primary, Keys: [][]byte{l.Primary}}
	cmd := shard.Command{Kind: shard.KindRollbackTxn, Step: step}
	if all && s.cfg.bug != bugBankAsyncRollsBackLocked {
		step.Commit = commit
		cmd.Kind = shard.KindCommitTxn
	}
	_, err := s.bankExec(ctx, string(l.Primary), cmd, nil)
	switch {
	case err == nil && cmd.Kind == shard.KindCommitTxn:
		st.stats.asyncDecidedForward++
		s.tracef("bank: %d decided committed at %d by its secondaries", l.Start, commit)
		return shard.TxnCommitted, commit
	case err == nil:
		st.stats.asyncDecidedBack++
		s.tracef("bank: %d decided rolled back by its secondaries", l.Start)
		return shard.TxnRolledBack, 0
	}
	res, cerr := s.bankCheckPrimary(ctx, l.Start, l.Primary)
	if cerr != nil || res.Status != shard.TxnCommitted && res.Status != shard.TxnRolledBack {
		return shard.TxnPending, 0
	}
	return res.Status, res.Revision
}

// bankAsyncSecondaries returns the secondaries of l's async transaction,
// from its primary lock: l itself, or the lock a replica of the
// primary's shard holds (as the gRPC server's CheckTxn reads it). Not
// found: another resolver recorded the outcome since, or the replica
// lags.
func (s *simulation) bankAsyncSecondaries(l *shard.TxnLock) ([][]byte, bool) {
	if bytes.Equal(l.Key, l.Primary) && l.Async {
		return l.Secondaries, true
	}
	id, to, err := leaseFleet{s: s}.route(l.Primary)
	if err != nil {
		return nil, false
	}
	n, err := leaseStore{n: to}.live()
	if err != nil {
		return nil, false
	}
	p, ok, err := n.store.TxnLock(id, l.Primary)
	if err != nil || !ok || p.Start != l.Start || !p.Async {
		return nil, false
	}
	return p.Secondaries, true
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
	// 0, 1 (and 2 with async commit): the crash points of two phases.
	crash := st.rng.IntN(16)
	async := st.rng.IntN(4) != 0
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
	if async {
		t.async = true
		s.bankTransferAsync(ctx, t, muts, start, crash)
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

// bankTransferAsync writes t's two sorted mutations with async commit,
// as router's Commit does: a prewrite of each, the primary's listing
// the secondary; once both applied, t is committed (acknowledged) at the
// highest prewrite revision, and the primary's commit, then the
// secondary's, follow. The crash points: crash 0 stops the coordinator
// before the secondary's prewrite or while it is on its way, 1 after
// both prewrites, 2 after the primary's commit.
func (s *simulation) bankTransferAsync(ctx context.Context, t *bankTransfer, muts []shard.Mutation, start uint64, crash int) {
	st := s.bank
	primary, secondary := muts[0].Key, muts[1].Key
	for i, m := range muts {
		pctx := ctx
		if i == 1 && crash == 0 {
			// The coordinator "crashes" before the secondary's prewrite
			// (half the time), or a few steps into it, whose attempts
			// may apply after.
			steps := st.rng.IntN(2) * (1 + st.rng.IntN(30))
			if steps == 0 {
				t.outcome = txCrashMidPrewrite
				st.stats.crashed++
				s.tracef("bank: transfer %d (async) stopped before the prewrite of %q", t.id, m.Key)
				return
			}
			var cancel context.CancelFunc
			pctx, cancel = leaseRuntime{as: s.actors}.WithTimeout(ctx, time.Duration(steps)*leaseStep)
			defer cancel()
		}
		pw := &shard.TxnStep{Start: start, Primary: primary, TTL: bankTTL, Async: true, Mutations: []shard.Mutation{m}}
		if i == 0 {
			pw.Secondaries = [][]byte{secondary}
		}
		var res *shard.Result
		var err error
		for attempt := 0; attempt < 3; attempt++ {
			res, err = s.bankExec(pctx, string(m.Key), shard.Command{Kind: shard.KindPrewrite, Step: pw}, &t.prewrites[i])
			var le *shard.LockedError
			if errors.As(err, &le) && pctx.Err() == nil {
				s.bankResolve(pctx, &le.Lock)
				continue
			}
			break
		}
		if i == 1 && crash == 0 {
			t.outcome = txCrashMidPrewrite
			st.stats.crashed++
			s.tracef("bank: transfer %d (async) stopped during the prewrite of %q: %v", t.id, m.Key, err)
			return
		}
		if err != nil {
			s.tracef("bank: transfer %d (async) prewrite of %q: %v", t.id, m.Key, err)
			s.bankAbortAsync(t, muts, start)
			return
		}
		t.commit = max(t.commit, res.Revision)
	}
	// Both prewrites applied: committed at t.commit, and acknowledged.
	t.outcome = txCommitted
	st.stats.committed++
	st.stats.asyncCommitted++
	if crash == 1 {
		st.stats.crashed++
		return
	}
	commit := func(key []byte) error {
		_, err := s.bankExec(ctx, string(key), shard.Command{Kind: shard.KindCommitTxn,
			Step: &shard.TxnStep{Start: start, Primary: primary, Commit: t.commit, Keys: [][]byte{key}}}, nil)
		if err != nil {
			s.tracef("bank: transfer %d (async) commit of %q at %d: %v", t.id, key, t.commit, err)
		}
		return err
	}
	if commit(primary) != nil {
		return
	}
	if crash == 2 {
		st.stats.crashed++
		return
	}
	_ = commit(secondary)
}

// bankAbortAsync ends async transfer t, one of whose prewrites failed or
// went unanswered, as router's abortAsync does: whether its keys are
// locked is unknown, so a resolver could find both locked and record the
// commit. The outcome is decided at the primary first, by recording the
// rollback there (then the secondary's lock, if any, is removed); if
// that is refused, a resolver recorded the commit, and t committed at
// the revision recorded; if neither is known, t's outcome is unknown.
func (s *simulation) bankAbortAsync(t *bankTransfer, muts []shard.Mutation, start uint64) {
	st := s.bank
	ctx, cancel := leaseRuntime{as: s.actors}.WithTimeout(context.Background(), bankCallTimeout)
	defer cancel()
	primary := muts[0].Key
	rollback := func(key []byte) error {
		_, err := s.bankExec(ctx, string(key), shard.Command{Kind: shard.KindRollbackTxn,
			Step: &shard.TxnStep{Start: start, Primary: primary, Keys: [][]byte{key}}}, nil)
		return err
	}
	err := rollback(primary)
	if err == nil {
		t.outcome = txConflict
		st.stats.conflicts++
		st.stats.asyncRolledBack++
		_ = rollback(muts[1].Key)
		return
	}
	if res, cerr := s.bankCheckPrimary(ctx, start, primary); cerr == nil && res.Status == shard.TxnCommitted {
		t.outcome, t.commit = txCommitted, res.Revision
		st.stats.committed++
		st.stats.asyncCommitted++
		s.tracef("bank: transfer %d (async): its rollback was refused (%v): committed at %d by a resolver", t.id, err, t.commit)
		_, _ = s.bankExec(ctx, string(muts[1].Key), shard.Command{Kind: shard.KindCommitTxn,
			Step: &shard.TxnStep{Start: start, Primary: primary, Commit: t.commit, Keys: [][]byte{muts[1].Key}}}, nil)
		return
	} else if cerr == nil && res.Status == shard.TxnRolledBack {
		t.outcome = txConflict
		st.stats.conflicts++
		st.stats.asyncRolledBack++
		_ = rollback(muts[1].Key)
		return
	}
	t.outcome = txUnknown
	st.stats.unknown++
	s.tracef("bank: transfer %d (async): the rollback at the primary: %v", t.id, err)
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
