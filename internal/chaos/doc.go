// Package chaos is Flotilla's nemesis test: a real fleet (processes on
// loopback, or containers), client goroutines recording every operation
// they make, watchers recording every response of their watches, and lock
// clients recording every hold of a concurrency.Mutex, bank and
// list-append clients running transactions across shards, faults
// injected on a seeded schedule, and each history checked for
// linearizability (porcupine), lost writes, the watchers' account of the
// writes against the acknowledged ones, mutual exclusion under the lock
// with its fencing revision, the bank's conservation of money and lost
// transfers, and the list-append transactions' isolation
// (internal/txncheck).
//
// It owns the harness (the two fleet modes, the workload, the nemeses)
// and the checker. It does not own the fleet launcher (internal/launch,
// through its test face internal/fleet; the containers' readiness waits
// are launch's too), the client (router) or the deterministic simulator
// (internal/sim, which has a model of the same shape for its own records;
// the checker here is a separate small copy so the two evolve
// independently), nor the lock (router/concurrency) or the list-append
// checker (internal/txncheck), which it only uses.
//
// # Running it
//
//	make chaos-short                       # about 75 s of process-mode faults
//	make chaos CHAOS_DURATION=30m CHAOS_MODE=docker
//	go test ./internal/chaos -run TestChaos -v -chaos.duration=30m -chaos.mode=process|docker \
//	    [-chaos.seed=N] [-chaos.faults=kill,pause-leader,...] [-chaos.out=DIR] [-chaos.lockers=N] \
//	    [-chaos.bank=N] [-chaos.txn=N] [-chaos.reshape=3s] [-chaos.max-shards=64]
//
// Without -chaos.duration TestChaos skips, so `go test ./...` runs only the
// checker's own tests (which feed it hand-made histories with planted
// bugs: a stale read, a double CAS, a write reported as not applied that
// applied, lost acknowledged writes; and for the watch check a missing
// event, a duplicate, a reordering, a progress lie, the event of a failed
// write, and more; for the lock check two holders at once with the same
// or increasing fences, a fence going backwards in real time or in the
// fenced register, a stale holder's write taken after its successor's;
// for the bank money created by a lost update, an acknowledged transfer
// lost with the total intact, a failed transfer that took effect, half a
// transfer, a fractured or stale audit, an audit seeing past its start,
// a garbage read; for list-append a lost append, a G1c cycle, an aborted
// read, and write skew when serializability is claimed; each beside clean
// runs that must pass).
// -chaos.save-all saves every cycle's history, not only failing ones.
//
// # The fleet
//
// Three placementd replicas and five shardnodes, replication factor 3,
// eight initial shards, 50 ms Raft ticks (elections in about half a
// second) and 250 ms placement heartbeats. In process mode they are
// processes on loopback (internal/fleet). In docker mode each is a
// container of an image built FROM scratch (deploy/Dockerfile) over
// static binaries of the checkout, on a bridge network of the test's own
// with fixed addresses; every container, network and image carries the
// label flotilla-chaos-owner=<pid> and is removed at the end, and a later
// run removes what a killed run left behind.
//
// # One cycle
//
// The run is a sequence of fault cycles until -chaos.duration has passed.
// Each cycle is independent, with keys of its own (16 by default, their
// first bytes spread over the key space so every shard holds some):
//
//  1. plan: one fault kind at random, and with probability 0.4 a second
//     one, keeping at most two of the five shardnodes affected (the
//     "leader" is the node placement says leads the most shards);
//  2. start the watchers (see below), then the clients: 10 goroutines
//     through one shared router, and 2 through routers pinned to one node
//     (a dialer that refuses every other shardnode): the paused or cut-off
//     node when the fault has one, else a random node; the lock clients,
//     the bank and the list-append clients (see below);
//  3. 1.5 s of load, inject the faults, hold them 3–12 s (halfway through,
//     restart the second watcher's router), heal (resume, reconnect,
//     restart with data intact, in reverse order);
//  4. recovery: poll until every key of the cycle has taken a write called
//     after the heal (deadline two minutes; not recovering fails the test);
//  5. one more second of load, stop the clients, the lock clients, the
//     bank (whose final audit reads every account in one snapshot) and
//     the list-append clients (whose final transaction reads every list),
//     read every key and the fenced register linearizably (the final
//     reads), poll until both watchers' progress
//     has reached the highest revision acknowledged in the cycle (a
//     minute; a watcher short of it is a watch violation), stop them,
//     check the history.
//
// The faults: kill (SIGKILL one or two random shardnodes), kill-leader,
// pause-leader (SIGSTOP/SIGCONT; docker: the cgroup freezer),
// kill-placement-leader, and in docker mode isolate-leader (the leading
// node cut off from every other node and placement replica) and
// partition-split (nodes 2|3, placement replicas 1|2). Partitions are
// iptables DROP rules inside the containers' network namespaces, so nodes
// lose each other but the host still reaches every container: the pinned
// clients really talk to the minority.
//
// # The workload and the model
//
// Each client loops: put (30%) of a value unique in the run, CAS (22%)
// from the value it last saw (or from absent), delete (8%), get (40%:
// linearizable, or lease for a quarter of them). Every operation is
// recorded with its call and return time on one monotonic clock, and an
// acknowledged one with the revision the router returned (PutRev,
// DeleteRev, CASResult.Revision; for a get, GetAt's Revision, the
// revision it read at). Outcomes:
//
//   - ok: the result is recorded;
//   - unknown: a write that returned ErrAmbiguous or whose deadline
//     passed. It is never dropped: porcupine gets it with a return time
//     after the end of the history, so it may take effect at any point
//     after its call, or never; an unknown CAS swaps iff the value matches
//     when it takes effect;
//   - failed: a read that failed (no effect, left out), or a write the
//     router reports as surely not applied (no ErrAmbiguous): left out,
//     which holds the router to that claim. When a key fails the check,
//     it is checked again with such writes as unknown, and the report says
//     whether the claim is what broke.
//
// The model is a register per key (porcupine partitions by key): the state
// is the value, "" when absent. A get must return the state; a put sets
// it; a delete sets it to ""; a CAS that swapped needs state == expected,
// one that did not needs state != expected and state == the value it
// reported.
//
// # The watchers
//
// Each cycle has two watchers of the range from its least key to just past
// its greatest (every shard's part of it, since the keys are spread; the
// keys of other cycles in that range are not checked). Watcher 0 watches
// through the shared router from now, and the workload starts only once
// its first progress P has arrived (30 s bound), so the cycle's writes
// all come after its start P+1. Watcher 1 watches from P+1, with previous
// versions (WithPrevKV), through a router of its own, which is closed
// halfway through the fault window: a new router resumes the watch from
// the highest progress (or event revision) received + 1, a new session.
// Both ask for progress every 200 ms. Every response (events, progress,
// error) is recorded with its receive time on the history's clock, with
// the session it belongs to; a session that ends while the harness still
// watches is recorded, and a new one resumes after 200 ms, unless it ended
// with a CompactedError, after which no resume can help: the watcher
// gives up, and is not waited for.
//
// # The lock clients
//
// Each cycle has -chaos.lockers (4) lock clients, each with a router and a
// concurrency.Session of its own (TTL 5 s, so a lease is lost when its
// home cannot answer keepalives for that long), all on one Mutex of the
// cycle's, and one key of the cycle's used as a fenced register (the two
// outside every watch range, one in the first shard, one in the last).
// Each loops: a session (a new one when the last ended), Lock (10 s
// bound), record the hold acquired (the Lock call and return times and
// Mutex.Revision, the fence), then one to three fenced writes 20-100 ms
// apart, and Unlock (the hold is released when Unlock is called). A
// fenced write reads the register (linearizably) and, unless the value
// read carries a higher fence than the hold's, swaps from it (CAS) to a
// value carrying the hold's fence and naming the hold
// ("f<fence>.l<client>.h<hold>.n<seq>"); a swap that fails is tried again
// from the value it found, at most three times. A higher fence read or
// found ends the hold: the client writes nothing more, unlocks, and the
// hold is "fenced". When the session's Done closes while it holds, the
// client stops acting at once (no Unlock; the hold is "lost") and starts
// a new session. A failed Unlock closes the session (which revokes the
// lease, releasing the lock).
//
// Once per cycle at most, a hold stalls (chance 0.03 each): after
// its first write it stops its session's keepalives (Session.Orphan) and
// does nothing for the TTL + 3 s, as a paused process would, then makes
// one more fenced write before it looks at Done: the write the fence must
// refuse if the next holder has written meanwhile.
//
// A session is lost when its Done closed before the harness closed it,
// or when, before the harness closes it, TimeToLive finds its lease gone
// or with no time left, or when its holder stalled. A hold is lost when
// its session is lost and it is the session's last hold (a later hold of
// the same session took the lock with the lease, so the lease outlived
// the earlier hold). Every register operation is recorded as an Op.
//
// # The bank
//
// Each cycle has eight accounts, one in each initial shard (inside the
// watch range: the watchers see their events as events of other keys,
// whose order they still check), each set to 100 by a put before the
// clients start. -chaos.bank (2) clients, on the shared router, loop: a
// Client.Txn reads two distinct random accounts and writes both, moving
// 1-10 from one to the other. An account's value is "<balance>/<tag>",
// the tag naming the transfer that wrote it ("init" for the put), unique
// in the run, so every value read names its writer. A transfer is
// recorded with what it read of both accounts (balance, tag, ModRevision),
// its start revision and its outcome: ok (Commit returned its commit
// revision), failed (ErrConflict without ErrAmbiguous: the router
// documents that nothing was written), or unknown (any other Commit
// error: ErrAmbiguous, a deadline, an unavailable shard; it may have
// committed). A transfer whose start or reads failed sent nothing and
// is only counted (bank-errors). One auditor loops: a read-only Txn reads
// every account at its start revision. After the heal, the final audit
// does the same, retried for up to a minute.
//
// The check (CheckBank): every audit sums to 800, the final one
// included; every value read (by an audit or a transfer) was written by
// the initial put or a transfer that did not fail, with the balance that
// writer computed. Each account's chain is walked back from the final
// value through the value each writer read, to the initial put: every
// acknowledged transfer must be in both its accounts' chains (else it
// is lost: for instance overwritten by a transfer that never read it), a
// failed one in neither, an unknown one in both or neither (then it
// counts as applied). Every value an audit saw must be in its account's
// chain, and for every transfer at or below it in that chain, the audit
// saw that transfer or a later one in the other account (no fractured
// snapshot). Revisions: every read of one writer's value carries the
// same ModRevision, the commit revision for an acknowledged transfer;
// revisions increase along each chain; an audit at start S saw, in each
// account, a value committed at or below S whose successor in the chain
// committed above S. Unknown outcomes are never failures: only what the
// final chains and the reads show of them is judged. Each cycle also
// checks its own record once more with its first acknowledged transfer
// recorded as failed: a check that does not report it is blind, a bank
// violation.
//
// # List-append
//
// Each cycle has eight list keys, one in each initial shard, and
// -chaos.txn (2) clients on the shared router running Elle's list-append
// workload: a Client.Txn of one to four operations on random keys, each
// either a read (Get) or an append (Get, then Put of the list with a
// value unique in the cycle added), then Commit. Even cycles run plain
// transactions and are judged at snapshot isolation; odd cycles start
// them with router.Serializable and are judged as serializable. Outcomes
// are recorded as the bank's (a transaction whose read failed is aborted:
// it sent nothing), with the start and commit revisions. After the heal a
// last transaction reads every list, so each key's order is known to its
// end, and internal/txncheck checks the history (G0, G1a, G1b, G1c,
// G-single, G2 where forbidden, incompatible orders, garbage, duplicate
// and internal reads, dependencies against the revisions); every anomaly
// the level forbids is a txn violation, and so is a history txncheck
// refuses as malformed, and a check that does not report G1a when a
// committed append another transaction read is recorded as aborted in a
// copy of the cycle's history.
//
// # The reshaper
//
// While the cycles run, one goroutine of the test (the reshaper) changes
// the fleet's shape as an operator would with `flotilla shard split` and
// `flotilla shard move`: every -chaos.reshape (3 s; 0 turns it off) it
// lists the shards (ListShards) and asks placement to move a random voter
// of a random shard to a random node holding no replica of it
// (MoveReplica); and, while placement lists fewer than -chaos.max-shards
// (64) shards, at most once per duration/(max-shards - 8) (so the budget
// of splits lasts the run: every tick in a 75 s run, about every 30 s in
// 30 minutes), it splits a shard (SplitShard) at a key of the current
// cycle's that the shard holds together with the key just before it
// (the cycle's KV, bank and list-append keys, sorted), so the two end up
// on two shards; when no shard holds two of them, it splits the shard
// holding the most at the middle key its leader picks. Each call has a
// 30 s bound and goes to the placement replica that answered last,
// moving to the next on UNAVAILABLE or DEADLINE_EXCEEDED (no leader, a
// leader killed mid-call), as the CLI's placement client does.
//
// It is a goroutine of its own for the whole run, not a nemesis of the
// cycle's plan: a split or move is not a fault with a heal, and running
// it independently of the fault windows means its operators land before,
// during and after the faults, and during the final audits and reads,
// at whatever point of a transaction they happen to. Placement refuses
// often under faults (another operator changing the shard, the target
// node down, no quorum, a shard of one key): each refusal is counted,
// none fails the run. The checks are the same with and without it; what
// it adds is that transactions, locks and watches must hold across
// splits (locks and intents going with the data), leadership hand-overs
// and replica changes.
//
// # What is checked
//
//   - Linearizability of each key's history, final reads included. Every
//     linearizable and lease read, including those the pinned clients send
//     to a paused or partitioned node, is in it: a minority that
//     acknowledged a write that then vanished, or served a stale value,
//     makes the history non-linearizable. So the read guarantee verified
//     is: a linearizable or lease read acknowledged by any node returns
//     the latest value acknowledged before the read began (or that of a
//     write concurrent with it); a write is acknowledged only once a
//     majority has it.
//   - Lost writes: every acknowledged put, successful CAS and delete must
//     be accounted for by the final reads: the final value must have been
//     written by a write that could have taken effect after it (values are
//     unique, so the final value names its write; a final absent key is
//     named by the deletes).
//   - The watch (CheckWatch), per watcher over all its sessions, from its
//     start to the highest progress it reported (its coverage): event
//     revisions strictly increase, and none is at or below a progress
//     reported before it; every event is of an issued write (put and CAS
//     events named by their unique value, delete events by an
//     acknowledged delete's revision or else by a delete of unknown
//     outcome called before the event came), never of one the router
//     reported as surely not applied nor of a CAS that reported no swap,
//     and no write's event comes twice (an unknown write's included); an
//     acknowledged write's event carries its revision, and arrives after
//     the write was called; every acknowledged put, swapped CAS, and
//     delete of a key the watch has present, in the coverage, is
//     delivered; no acknowledged write is below the start, nor was called
//     after the watcher had received a progress at or above its revision.
//     Replaying the events from absent keys (a cycle's keys are new) gives
//     each put the create revision and version it carries (etcd's: create
//     on the first put after absence, version 1, then +1), deletes only
//     present keys, gives watcher 1's events the previous version they
//     carry (value, mod and create revision, version; none after an
//     absence), and agrees with every acknowledged CAS (the value it
//     swapped from, or found at its revision) and get (the value it read
//     at its revision). A session ending with an error the harness did not
//     cause is a violation (after three, the rest are counted), and so is
//     a coverage that never reached the cycle's highest acknowledged
//     revision. Across the two watchers, an
//     event in both coverages must be delivered by both (an unknown
//     write's too).
//   - Mutual exclusion (CheckLocks), over a cycle's holds, each with its
//     interval [Acquired, Released] (Lock's return to the Unlock call, or
//     to the moment the client saw the session end or a higher fence):
//     no two holds have the same fence; a hold whose Lock was called
//     after another's returned has the higher fence; of any two holds,
//     the one with the lower fence was released before the other was
//     acquired, unless it was lost (so two holders at once, or a hand-over
//     against fence order, are violations unless the earlier holder lost
//     its lease); and then the register shows no write of the lost holder
//     at a revision above the first of its successor's. The register, by
//     revision over every acknowledged sight of it (reads, swaps, the
//     value a failed CAS found), holds only values holds wrote with their
//     own fence, and its fence never decreases and changes writer only to
//     a strictly higher fence: the fences of successive holds strictly
//     increase in the order the register saw them, and a write with a
//     lower fence never took effect after a higher one (nor did a stale
//     write of unknown outcome). The register's operations are also
//     checked as one key for linearizability and lost writes.
//
// A key whose check fails gets its porcupine visualization written to
// <out>/viz/cycleNNNN-<key>.html; a cycle with any violation gets its whole
// history (operations, then the watchers' records, then the watch
// violations) written to <out>/cycleNNNN-history.txt; the paths are
// printed, with the seed, and the first 30 watch violations. The same
// history is saved as JSON lines in <out>/cycleNNNN-history.jsonl (an
// operation per line, as before watchers existed, then a watch record per
// line as {"Watch": {...}}; ReadHistory reads the operations of either
// form, ReadRun both), which `go run ./internal/chaos/recheck [-timeout D]
// FILE` checks again: with a longer search bound for a key left undecided,
// or with a changed checker.
//
// # Output
//
// A line per cycle (faults, hold, operations, unknown and failed ones,
// CAS that swapped out of those decided, the pinned clients' operations
// acknowledged during the fault out of those made, availability, watch
// sessions and events checked, the lock clients' figures, the bank's and
// the list-append transactions' figures, and the reshaper's
// "reshape: splits=D/R moves=D/R shards=S": splits and moves placement
// applied (D) and did not (R) during the cycle, and the shard count),
// then "chaos: reshape: splits=D/R moves=D/R shards=S refused: ..."
// with the run's totals and the refusals by call and gRPC code, and a
// "chaos: reshape: first CALL:CODE: MESSAGE" line for each of those,
// availability per fault kind, and last exactly
//
//	chaos: runs=N violations=V lost=L watch=W lock=K bank=B txn=T
//
// N is the number of fault cycles, each one independently checked
// history; V is the number of keys (over all cycles) whose history is not
// linearizable or could not be decided within the check timeout; L is the
// number of acknowledged writes lost; W is the number of watch violations;
// K is the number of lock violations; B is the number of bank violations
// (lost transfers included) and T the number of list-append anomalies
// forbidden at the cycle's level. The line before it counts the bank's
// transfers (committed, unknown and of those applied, conflicts), audits
// and lost transfers, and the list-append transactions; the one before
// that the lock clients' acquisitions, sessions, lost sessions,
// acknowledged fenced writes, and holds ended by a higher fence
// (fenced-out). The test fails when V, L, W, K, B or T is not zero, or
// when the fleet did not recover after a fault. A cycle with a bank or
// list-append violation (or every cycle, with -chaos.save-all) gets
// <out>/cycleNNNN-bank.txt and .json (transfers, audits, violations) and
// <out>/cycleNNNN-listappend.txt and .jsonl (a txncheck.Txn per line,
// for txncheck.Check). A cycle with a lock violation gets its holds, lock sessions
// and register operations in its history file (the JSON lines hold only
// the operations and watch records).
//
// Availability, per cycle and per fault kind: errors is the number of
// failed or unknown operations of the shared clients between the fault and
// the recovery; unavailable is the longest time one key took no successful
// write in that window (a fault that takes two replicas of a shard away
// makes it as long as the window); recover is the time from the heal to
// every key taking writes again.
//
// Timing is not reproducible from a seed; the schedule (fault kinds,
// victims when placement reports the same leaders, windows) and the
// operation mix are.
package chaos
