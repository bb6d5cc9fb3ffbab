package chaos

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/internal/poll"
	"github.com/flotilla-kv/flotilla/internal/txncheck"
	"github.com/flotilla-kv/flotilla/router"
)

var (
	flagDuration = flag.Duration("chaos.duration", 0, "how long to run fault cycles (fleet start-up not included); 0 skips TestChaos")
	flagMode     = flag.String("chaos.mode", "process", "process (loopback processes: kills, pauses) or docker (containers: also partitions)")
	flagSeed     = flag.Uint64("chaos.seed", 0, "seed of the fault schedule and operation mix (0: from the clock; printed)")
	flagClients  = flag.Int("chaos.clients", 10, "workload clients through the shared router")
	flagPinned   = flag.Int("chaos.pinned", 2, "extra clients pinned to the faulted node (or a random one)")
	flagKeys     = flag.Int("chaos.keys", 16, "keys per cycle, spread over the shards")
	flagFaults   = flag.String("chaos.faults", "", "comma-separated fault kinds (default: every kind the mode supports)")
	flagHoldMin  = flag.Duration("chaos.hold-min", 3*time.Second, "shortest fault window")
	flagHoldMax  = flag.Duration("chaos.hold-max", 12*time.Second, "longest fault window")
	flagOut      = flag.String("chaos.out", "", "directory for histories, visualizations and logs (default: a new temporary directory, kept)")
	flagLockers  = flag.Int("chaos.lockers", 4, "lock clients, each with a router and a session of its own, taking one Mutex per cycle (0: none)")
	flagSaveAll  = flag.Bool("chaos.save-all", false, "save every cycle's history (cycleNNNN-history.jsonl), not only those that fail a check")
	flagBank     = flag.Int("chaos.bank", 2, "bank transfer clients (transactions across shards), beside one auditor (0: no bank)")
	flagTxn      = flag.Int("chaos.txn", 2, "list-append transaction clients (0: none)")
	flagReshape  = flag.Duration("chaos.reshape", 3*time.Second, "how often the reshaper asks placement to move a replica (and, paced over the run, to split a shard); 0: no reshaper")
	flagMaxShard = flag.Int("chaos.max-shards", 64, "the reshaper splits no more once placement lists this many shards")
)

// recoveryTimeout bounds the wait for every key to take writes again
// after a heal. The machine is small and shared: generous.
const recoveryTimeout = 2 * time.Minute

// figures accumulates availability per fault kind.
type figures struct {
	cycles      int
	errors      int
	unavailable []time.Duration
	recover     []time.Duration
}

func TestChaos(t *testing.T) {
	if *flagDuration <= 0 {
		t.Skip("set -chaos.duration to run the nemesis test (make chaos, make chaos-short)")
	}
	seed := *flagSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	out := *flagOut
	if out == "" {
		var err error
		if out, err = os.MkdirTemp("", "flotilla-chaos-"); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("chaos: mode=%s seed=%d duration=%s out=%s\n", *flagMode, seed, *flagDuration, out)

	var c cluster
	switch *flagMode {
	case "process":
		c = startProcessCluster(t)
	case "docker":
		c = startDockerCluster(t)
	default:
		t.Fatalf("chaos: -chaos.mode %q: want process or docker", *flagMode)
	}
	in, err := newInspector(c.PlacementAddrs())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.Close)
	in.waitBootstrapped(t, 3*time.Minute)

	enabled := allFaults(c)
	if *flagFaults != "" {
		want := strings.Split(*flagFaults, ",")
		for _, k := range want {
			if !slices.Contains(enabled, k) {
				t.Fatalf("chaos: fault %q not supported in %s mode (have %v)", k, *flagMode, enabled)
			}
		}
		enabled = want
	}
	rng := rand.New(rand.NewPCG(seed, 0x6e656d))
	nem := &nemesis{c: c, in: in, rng: rng, enabled: enabled}

	shared, err := router.New(context.Background(), routerConfig(c.PlacementAddrs()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shared.Close() })

	// The reshaper: splits paced so the shard budget lasts the run, a
	// move every tick.
	var rs *reshaper
	if *flagReshape > 0 {
		splitGap := *flagDuration / time.Duration(max(1, *flagMaxShard-initialShards))
		rs = startReshaper(in, c.Nodes(), *flagReshape, splitGap, *flagMaxShard, seed)
		fmt.Printf("chaos: reshape: a move every %s, a split every %s below %d shards\n", *flagReshape, max(splitGap, *flagReshape).Round(100*time.Millisecond), *flagMaxShard)
	}

	var (
		clk                           = clock{start: time.Now()}
		runs, violations, lost, watch int
		locks                         LockReport
		bankTotal                     BankReport
		txnTotal                      TxnReport
		byKind                        = map[string]*figures{}
		failed                        bool
	)
	begin := time.Now()
	for cycle := 0; time.Since(begin) < *flagDuration; cycle++ {
		res := runCycle(t, c, nem, rs, shared, clk, cycle, rng.Uint64(), out)
		runs++
		violations += len(res.report.Violations)
		lost += len(res.report.Lost)
		watch += len(res.report.Watch)
		locks.Acquisitions += res.locks.Acquisitions
		locks.Sessions += res.locks.Sessions
		locks.LostSessions += res.locks.LostSessions
		locks.Writes += res.locks.Writes
		locks.Fenced += res.locks.Fenced
		locks.Violations = append(locks.Violations, res.locks.Violations...)
		bankTotal.Transfers += res.bank.Transfers
		bankTotal.Committed += res.bank.Committed
		bankTotal.Unknown += res.bank.Unknown
		bankTotal.UnknownApplied += res.bank.UnknownApplied
		bankTotal.Aborted += res.bank.Aborted
		bankTotal.Audits += res.bank.Audits
		bankTotal.Lost += res.bank.Lost
		bankTotal.Violations = append(bankTotal.Violations, res.bank.Violations...)
		txnTotal.Txns += res.txn.Txns
		txnTotal.Committed += res.txn.Committed
		txnTotal.Violations = append(txnTotal.Violations, res.txn.Violations...)
		f := byKind[res.kinds]
		if f == nil {
			f = &figures{}
			byKind[res.kinds] = f
		}
		f.cycles++
		f.errors += res.errors
		f.unavailable = append(f.unavailable, res.unavailable)
		f.recover = append(f.recover, res.recover)
		if len(res.report.Violations) > 0 || len(res.report.Lost) > 0 || len(res.report.Watch) > 0 || len(res.locks.Violations) > 0 ||
			len(res.bank.Violations) > 0 || len(res.txn.Violations) > 0 || !res.recovered {
			failed = true
		}
	}

	if rs != nil {
		rs.halt()
		total, shards := rs.counts()
		fmt.Printf("chaos: reshape: %s shards=%d refused: %s\n", total, shards, total.codes())
		for _, k := range slices.Sorted(maps.Keys(total.First)) {
			fmt.Printf("chaos: reshape: first %s: %s\n", k, total.First[k])
		}
	}
	fmt.Println("chaos: availability per fault (errors = failed or unknown client ops from fault to recovery; unavailable = longest time a key took no write; recover = heal to every key writable):")
	kinds := make([]string, 0, len(byKind))
	for k := range byKind {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		f := byKind[k]
		fmt.Printf("chaos:   %-40s cycles=%-3d errors=%-5d unavailable mean=%-7s max=%-7s recover mean=%-7s max=%s\n",
			k, f.cycles, f.errors, mean(f.unavailable), slices.Max(f.unavailable).Round(10*time.Millisecond),
			mean(f.recover), slices.Max(f.recover).Round(10*time.Millisecond))
	}
	if failed {
		c.SaveLogs(filepath.Join(out, "logs"))
		fmt.Printf("chaos: logs saved in %s\n", filepath.Join(out, "logs"))
	}
	fmt.Printf("chaos: locks: acquisitions=%d sessions=%d lost-sessions=%d fenced-writes=%d fenced-out=%d violations=%d\n",
		locks.Acquisitions, locks.Sessions, locks.LostSessions, locks.Writes, locks.Fenced, len(locks.Violations))
	fmt.Printf("chaos: transactions: bank transfers=%d committed=%d unknown=%d (applied %d) conflicts=%d audits=%d lost=%d; list-append txns=%d committed=%d\n",
		bankTotal.Transfers, bankTotal.Committed, bankTotal.Unknown, bankTotal.UnknownApplied, bankTotal.Aborted, bankTotal.Audits, bankTotal.Lost,
		txnTotal.Txns, txnTotal.Committed)
	fmt.Printf("chaos: runs=%d violations=%d lost=%d watch=%d lock=%d bank=%d txn=%d\n", runs, violations, lost, watch, len(locks.Violations),
		len(bankTotal.Violations), len(txnTotal.Violations))
	if violations > 0 || lost > 0 || watch > 0 || len(locks.Violations) > 0 || len(bankTotal.Violations) > 0 || len(txnTotal.Violations) > 0 {
		t.Fatalf("chaos: %d violations, %d lost writes, %d watch violations, %d lock violations, %d bank violations, %d list-append violations (seed %d, histories in %s)",
			violations, lost, watch, len(locks.Violations), len(bankTotal.Violations), len(txnTotal.Violations), seed, out)
	}
	if failed {
		t.Fatalf("chaos: the fleet did not recover after a fault (seed %d, logs in %s)", seed, out)
	}
}

func mean(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	var s time.Duration
	for _, d := range ds {
		s += d
	}
	return (s / time.Duration(len(ds))).Round(10 * time.Millisecond)
}

// cycleResult is what one fault cycle measured.
type cycleResult struct {
	kinds       string
	report      Report
	locks       LockReport
	bank        BankReport
	txn         TxnReport
	errors      int
	unavailable time.Duration
	recover     time.Duration
	recovered   bool
	reshape     string
}

// cycleKeys returns the keys of a cycle: their first bytes spread over
// the key space, so they fall into every initial shard.
func cycleKeys(cycle, n int) []string {
	keys := make([]string, n)
	for j := range keys {
		keys[j] = string([]byte{byte(j*256/n + 5)}) + fmt.Sprintf("chaos-c%04d-k%02d", cycle, j)
	}
	return keys
}

// lockKeys returns a cycle's Mutex prefix and fenced register key: one
// below every cycle's watch range (first byte 1-4), the other above it
// (246-254), which one drawn from the cycle's seed; so they fall into the
// first and the last shard, and no watcher sees them.
func lockKeys(cycle int, seed uint64) (prefix, register string) {
	rng := rand.New(rand.NewPCG(seed, 0x6c6f636b))
	lo, hi := byte(1+rng.IntN(4)), byte(246+rng.IntN(9))
	if rng.IntN(2) == 0 {
		lo, hi = hi, lo
	}
	return string([]byte{lo}) + fmt.Sprintf("chaos-c%04d-lock", cycle), string([]byte{hi}) + fmt.Sprintf("chaos-c%04d-fenced", cycle)
}

// watchRange returns the range a cycle's watchers watch: from its least
// key to just past its greatest.
func watchRange(keys []string) (start, end []byte) {
	lo, hi := slices.Min(keys), slices.Max(keys)
	return []byte(lo), append([]byte(hi), 0)
}

// watchStartTimeout bounds the wait for the first watcher's first
// response, and watchCatchUpTimeout the wait for the watchers' progress
// to pass the cycle's highest acknowledged revision.
const (
	watchStartTimeout   = 30 * time.Second
	watchCatchUpTimeout = time.Minute
)

// runCycle runs one fault cycle on its own keys: watchers, workload,
// fault, heal, recovery, final reads, check.
func runCycle(t *testing.T, c cluster, nem *nemesis, rs *reshaper, shared *router.Client, clk clock, cycle int, seed uint64, out string) cycleResult {
	keys := cycleKeys(cycle, *flagKeys)
	p := nem.planCycle()
	hold := *flagHoldMin
	if *flagHoldMax > hold {
		hold += time.Duration(nem.rng.Int64N(int64(*flagHoldMax - hold)))
	}
	res := cycleResult{kinds: p.kinds(), reshape: "reshape: off"}
	var reshapeBefore ReshapeCounts
	if rs != nil {
		rs.setKeys(slices.Concat(keys, bankKeys(cycle), listAppendKeys(cycle)))
		reshapeBefore, _ = rs.counts()
	}

	// Clients: the shared router, and pinned routers that reach only one
	// node (the faulted one when there is one).
	clients := make([]workerClient, 0, *flagClients+*flagPinned)
	for range *flagClients {
		clients = append(clients, workerClient{r: shared})
	}
	pin := p.pin()
	if pin == 0 {
		nodes := c.Nodes()
		pin = nodes[nem.rng.IntN(len(nodes))]
	}
	var pinned []*router.Client
	for range *flagPinned {
		cfg := routerConfig(c.PlacementAddrs())
		cfg.Dialer = pinnedDialer(append([]string{c.NodeAddr(pin)}, c.PlacementAddrs()...)...)
		r, err := router.New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		pinned = append(pinned, r)
		clients = append(clients, workerClient{r: r, node: pin})
	}
	// Watchers, before the first write: one on the shared router from
	// now, and once it has reported where it starts, one with a router of
	// its own from there, with previous versions (restarted in the fault
	// window).
	wlog := &WatchLog{}
	wstart, wend := watchRange(keys)
	watchers := []*cycleWatcher{startWatcher(0, clk, wlog, wstart, wend, 0, false /* prevKV */, shared, nil)}
	var from uint64
	if p0, err := watchers[0].waitResponded(watchStartTimeout); err != nil {
		fmt.Printf("chaos: cycle %d: %v\n", cycle, err) // the check reports it
	} else {
		from = p0 + 1
	}
	watchers = append(watchers, startWatcher(1, clk, wlog, wstart, wend, from, true /* prevKV */, nil, func() (*router.Client, error) {
		return router.New(context.Background(), routerConfig(c.PlacementAddrs()))
	}))
	// The bank and list-append clients, on the shared router.
	var (
		bk      *bank
		bankRun BankRun
		la      *listAppend
		level   = cycleLevel(cycle)
	)
	if *flagBank > 0 {
		var err error
		if bk, err = startBank(clk, shared, bankKeys(cycle), *flagBank, seed, fmt.Sprintf("c%d.t", cycle)); err != nil {
			bankRun.Setup = err.Error()
		}
	}
	if *flagTxn > 0 {
		la = startListAppend(clk, shared, listAppendKeys(cycle), level, *flagTxn, seed)
	}
	w := startWorkload(clk, keys, clients, seed, fmt.Sprintf("c%d.", cycle))
	// Lock clients, each with a router of its own.
	var lockRouters []*router.Client
	for range *flagLockers {
		r, err := router.New(context.Background(), routerConfig(c.PlacementAddrs()))
		if err != nil {
			t.Fatal(err)
		}
		lockRouters = append(lockRouters, r)
	}
	lockPrefix, lockRegister := lockKeys(cycle, seed)
	lk := startLockers(clk, lockRouters, lockPrefix, lockRegister, seed)

	// Warm up, then the fault window. The schedule's intervals are the
	// test's design, not waits for a condition.
	time.Sleep(1500 * time.Millisecond)
	faultAt := clk.now()
	for _, f := range p {
		f.inject()
	}
	time.Sleep(hold / 2)
	restartedAt := time.Now()
	watchers[1].restart()
	time.Sleep(hold - hold/2 - time.Since(restartedAt))
	healStart := clk.now()
	for i := len(p) - 1; i >= 0; i-- {
		p[i].heal()
	}
	healAt := clk.now()

	// Recovery: every key has taken a write called after the heal.
	recoveredAt, ok := waitRecovered(w, keys, healAt, recoveryTimeout)
	res.recovered = ok
	if !ok {
		t.Errorf("chaos: cycle %d (%s): keys still not writable %s after the heal", cycle, p, recoveryTimeout)
	}
	time.Sleep(time.Second) // steady load after recovery
	w.halt()
	if bk != nil {
		bankRun = bk.halt(shared)
	}
	var laHist []txncheck.Txn
	if la != nil {
		laHist = la.halt(shared)
	}
	for _, r := range pinned {
		r.Close()
	}
	lrun := lk.halt(shared)
	for _, r := range lockRouters {
		r.Close()
	}
	ops := append(w.hist.Ops(), finalReads(clk, shared, keys, len(clients), time.Minute)...)

	// The watchers must pass every acknowledged revision of the cycle
	// (writes, and the reads' revisions) before their records are checked.
	var highest uint64
	for _, o := range ops {
		if o.Outcome == OK {
			highest = max(highest, o.Revision)
		}
	}
	if err := waitWatchers(watchers, highest, watchCatchUpTimeout); err != nil {
		fmt.Printf("chaos: cycle %d: %v\n", cycle, err) // the check reports it
	}
	for _, ww := range watchers {
		ww.stop()
	}
	run := Run{Ops: ops, Watch: wlog.Records()}
	if rs != nil {
		now, shards := rs.counts()
		res.reshape = fmt.Sprintf("reshape: %s shards=%d", now.sub(reshapeBefore), shards)
	}

	// Availability, from the shared clients' operations.
	res.recover = time.Duration(recoveredAt - healAt)
	res.unavailable, res.errors = availability(ops, keys, faultAt, recoveredAt)

	// What the pinned clients got from their node during the fault, and
	// how many CAS swapped: evidence that the checks were exercised.
	var pinnedOK, pinnedAll, casOK, swapped int
	for _, o := range ops {
		if o.Node != 0 && o.Call >= faultAt && o.Return <= healStart {
			pinnedAll++
			if o.Outcome == OK {
				pinnedOK++
			}
		}
		if o.Kind == OpCAS && o.Outcome == OK {
			casOK++
			if o.Swapped {
				swapped++
			}
		}
	}

	name := fmt.Sprintf("cycle%04d", cycle)
	res.report = CheckRun(run, filepath.Join(out, "viz"), name)
	r := res.report
	res.locks = CheckLocks(lrun)
	lr := res.locks
	bankErrs, laErrs := int64(0), int64(0)
	if *flagBank > 0 {
		res.bank = CheckBank(bankRun)
		if bk != nil {
			bankErrs = bk.errs.Load()
			if !plantedBankCaught(bankRun) {
				res.bank.Violations = append(res.bank.Violations, "bank: the check is blind: an acknowledged transfer recorded as failed went unreported")
			}
		}
	}
	if la != nil {
		res.txn = checkListAppend(laHist, level)
		laErrs = la.errs.Load()
		if !plantedAbortCaught(laHist) {
			res.txn.Violations = append(res.txn.Violations, "txn: the check is blind: a committed append others read, recorded as aborted, was not reported as G1a")
		}
	}
	br, tr := res.bank, res.txn
	sessions := 0
	for _, rec := range run.Watch {
		if rec.Open {
			sessions++
		}
	}
	fmt.Printf("chaos: cycle %d: %s: hold=%s heal=%s ops=%d unknown=%d failed=%d cas-swapped=%d/%d pinned(n%d)-ok-in-fault=%d/%d errors=%d unavailable=%s recover=%s keys=%d watch-sessions=%d events=%d violations=%d lost=%d watch=%d locks: acquisitions=%d lock-errors=%d sessions=%d lost-sessions=%d fenced-writes=%d fenced-out=%d lock=%d bank: transfers=%d committed=%d unknown=%d(applied %d) conflicts=%d audits=%d bank-errors=%d bank=%d txn(%s): txns=%d committed=%d unknown=%d(seen %d) aborted=%d edges=ww%d/wr%d/rw%d allowed=%d txn-errors=%d txn=%d %s\n",
		cycle, p, hold.Round(100*time.Millisecond), time.Duration(healAt-healStart).Round(10*time.Millisecond),
		r.Ops, r.Unknown, r.Failed, swapped, casOK, pin, pinnedOK, pinnedAll, res.errors, res.unavailable.Round(10*time.Millisecond),
		res.recover.Round(10*time.Millisecond), r.Keys, sessions, r.Events, len(r.Violations), len(r.Lost), len(r.Watch),
		lr.Acquisitions, lk.lockErrs.Load(), lr.Sessions, lr.LostSessions, lr.Writes, lr.Fenced, len(lr.Violations),
		br.Transfers, br.Committed, br.Unknown, br.UnknownApplied, br.Aborted, br.Audits, bankErrs, len(br.Violations),
		levelName(level), tr.Txns, tr.Committed, tr.Unknown, tr.UnknownSeen, tr.Aborted, tr.WW, tr.WR, tr.RW, tr.Allowed, laErrs, len(tr.Violations), res.reshape)
	if len(br.Violations) > 0 || len(tr.Violations) > 0 || *flagSaveAll {
		saveTxnHistories(out, name, cycle, bankRun, br, laHist, tr)
	}
	failedCheck := len(r.Violations) > 0 || len(r.Lost) > 0 || len(r.Watch) > 0 || len(lr.Violations) > 0
	if failedCheck || *flagSaveAll {
		path := filepath.Join(out, name+"-history.txt")
		var b strings.Builder
		fmt.Fprintf(&b, "cycle %d, faults: %s, fault at %.3fs, heal at %.3fs\n", cycle, p, float64(faultAt)/1e9, float64(healAt)/1e9)
		for _, o := range ops {
			b.WriteString(o.String() + "\n")
		}
		b.WriteString("watchers:\n")
		for _, rec := range run.Watch {
			b.WriteString(rec.String() + "\n")
		}
		if len(r.Watch) > 0 {
			b.WriteString("watch violations:\n")
			for _, v := range r.Watch {
				b.WriteString(v + "\n")
			}
		}
		fmt.Fprintf(&b, "locks (prefix %q, fenced register %q): holds:\n", lockPrefix, lockRegister)
		for _, h := range lrun.Holds {
			b.WriteString(h.String() + "\n")
		}
		b.WriteString("lock sessions:\n")
		for _, s := range lrun.Sessions {
			fmt.Fprintf(&b, "l%d lease=%x lost=%v: %s\n", s.Client, s.Lease, s.Lost, s.How)
		}
		b.WriteString("fenced register:\n")
		for _, o := range lrun.Register {
			b.WriteString(o.String() + "\n")
		}
		if len(lr.Violations) > 0 {
			b.WriteString("lock violations:\n")
			for _, v := range lr.Violations {
				b.WriteString(v + "\n")
			}
		}
		_ = os.WriteFile(path, []byte(b.String()), 0o644)
		jsonPath := filepath.Join(out, name+"-history.jsonl")
		if f, err := os.Create(jsonPath); err == nil {
			if WriteRun(f, run) == nil && f.Close() == nil && failedCheck {
				fmt.Printf("chaos: check it again: go run ./internal/chaos/recheck %s\n", jsonPath)
			} else {
				_ = f.Close()
			}
		}
		if !failedCheck {
			return res
		}
		for _, v := range r.Violations {
			fmt.Printf("chaos: VIOLATION cycle %d: %s\n", cycle, firstLine(v))
		}
		for _, l := range r.Lost {
			fmt.Printf("chaos: LOST cycle %d: %s\n", cycle, l)
		}
		for _, v := range lr.Violations {
			fmt.Printf("chaos: LOCK cycle %d: %s\n", cycle, firstLine(v))
		}
		for i, v := range r.Watch {
			if i == maxPrinted {
				fmt.Printf("chaos: WATCH cycle %d: ... and %d more (in the history file)\n", cycle, len(r.Watch)-maxPrinted)
				break
			}
			fmt.Printf("chaos: WATCH cycle %d: %s\n", cycle, v)
		}
		fmt.Printf("chaos: history of cycle %d: %s\n", cycle, path)
	}
	return res
}

// maxPrinted is how many watch violations of a cycle are printed; the
// history file has them all.
const maxPrinted = 30

// waitRecovered polls the history until every key has a successful write
// (from an unpinned client) called at or after healAt, and returns the
// latest such first write's return time.
func waitRecovered(w *workload, keys []string, healAt int64, timeout time.Duration) (int64, bool) {
	var at int64
	err := poll.Until(context.Background(), timeout, 100*time.Millisecond, func(context.Context) error {
		first := map[string]int64{}
		for _, o := range w.hist.Ops() {
			if o.Node == 0 && o.isWrite() && o.Outcome == OK && o.Call >= healAt {
				if t, ok := first[o.Key]; !ok || o.Return < t {
					first[o.Key] = o.Return
				}
			}
		}
		if len(first) != len(keys) {
			return fmt.Errorf("%d of %d keys written since the heal", len(first), len(keys))
		}
		at = 0
		for _, t := range first {
			at = max(at, t)
		}
		return nil
	})
	if err != nil {
		return w.clk.now(), false
	}
	return at, true
}

// availability returns the longest time any key went without a
// successful write between from and to, and the number of failed or
// unknown operations in that window, counting the shared clients only.
func availability(ops []Op, keys []string, from, to int64) (time.Duration, int) {
	last := map[string]int64{}
	for _, k := range keys {
		last[k] = from
	}
	var gap int64
	errs := 0
	for _, o := range slices.SortedFunc(slices.Values(ops), func(a, b Op) int { return cmp.Compare(a.Return, b.Return) }) {
		if o.Node != 0 || o.Final || o.Return < from || o.Call > to {
			continue
		}
		if o.Outcome != OK {
			errs++
			continue
		}
		if o.isWrite() && o.Return <= to {
			gap = max(gap, o.Return-last[o.Key])
			last[o.Key] = o.Return
		}
	}
	for _, t := range last {
		gap = max(gap, to-t)
	}
	return time.Duration(gap), errs
}
