package sim

import (
	"hash/fnv"

	"github.com/cockroachdb/pebble/v2"

	"github.com/flotilla-kv/flotilla/multiraft"
)

// simBug is a bug planted on purpose, so the tests can show that the
// checks catch each kind of failure (a checker that cannot fail proves
// nothing). Only tests set it.
type simBug int

const (
	noBug simBug = iota
	// bugStaleReads serves linearizable and lease reads from any replica
	// without a read barrier (a stale read), and records them as
	// linearizable.
	bugStaleReads
	// bugDropWrites acknowledges some puts without applying them, on
	// every replica: acknowledged writes are lost.
	bugDropWrites
	// bugDiverge skips some puts on node 3's replicas only: replicas at the
	// same applied index differ.
	bugDiverge
	// bugPanic makes the state machine panic on some put, as a broken
	// invariant would.
	bugPanic
	// bugLeakyPartition lets messages through partitions that the
	// simulator believes are in place: a node "cut off" from the
	// majority commits writes and confirms reads (isolation.go).
	bugLeakyPartition
	// bugSkewBeyondBound slows the clock of a node cut off from the
	// majority to a tenth of the nominal rate, far beyond the drift
	// leases tolerate (skew.go): its lease outlives the followers'
	// promise not to vote, and it serves stale lease reads.
	bugSkewBeyondBound
	// bugReadWithoutOwnership routes every read by the key's original
	// group and skips the check, after reading, that the replica still
	// owns the key: after a split, a read goes through the left-hand
	// group's barrier but returns what the right-hand replica on that
	// node has applied, which may be stale (split.go).
	bugReadWithoutOwnership
	// bugLyingDisk turns disk faults into a disk that lies: WAL syncs
	// report success without syncing, and the node crashes a little
	// later, losing writes it had claimed durable (votes, log entries it
	// acknowledged). Raft's safety rests on those (disk.go).
	bugLyingDisk

	// Bugs of fleet runs, planted where placement meets the simulator:
	// in the goroutines it runs, the Runtime, the Admin calls and the
	// nodes.

	// bugPlacementPanics: a placement goroutine panics (the Connector's
	// Admin panics once the run is past step 300).
	bugPlacementPanics
	// bugLostWakeup: the scheduling loop's 40th sleep never ends, as if
	// its timer were lost: placement stops scheduling.
	bugLostWakeup
	// bugAdminHangs: an AddReplica call is never answered and its client
	// ignores its context: the operator hangs.
	bugAdminHangs
	// bugAddLeavesLearner: AddReplica adds the learner and answers
	// success without promoting it: every add leaves a learner that
	// repair removes, and the fleet never settles.
	bugAddLeavesLearner
	// bugAddIsNoop: AddReplica answers success without adding anything,
	// and GetShardInfo then names the replica it claimed to add, as a
	// leader answering from a configuration it never committed would: a
	// move removes a voter it never replaced, leaving shards short of
	// voters, or without a live quorum while another node is down.
	bugAddIsNoop
	// bugLoseSplitReplica: node 2 deletes every replica a split creates
	// on it, the way a replica that skipped a split never gets its
	// right-hand side: shards name replicas no node hosts.
	bugLoseSplitReplica

	// Bugs of watches and reads at a revision (shard backend), planted
	// between the shard package and the checks (watch.go, readsat.go),
	// as a broken watch or read path would show to a client.

	// bugWatchDropsEvent: every fourth answer with events loses its
	// first event.
	bugWatchDropsEvent
	// bugWatchDropsWrite: every third answer with events loses its last
	// write, all its events.
	bugWatchDropsWrite
	// bugWatchDuplicatesEvent: every fourth answer with events starts
	// with the last event of the piece's previous answer again.
	bugWatchDuplicatesEvent
	// bugWatchReorders: every fourth answer with events is held back and
	// delivered after the piece's next one.
	bugWatchReorders
	// bugWatchSplitsWrite: an answer whose last write has several events
	// (a batch) is delivered as two, the write's last event alone in the
	// second, the first claiming progress just below the write.
	bugWatchSplitsWrite
	// bugWatchProgressAhead: every answer claims 50 ms of revisions more
	// progress than it has: events at or below it come later.
	bugWatchProgressAhead
	// bugListStale: a session lists its range 30 ms of revisions before
	// the revision it watches from: the writes in between are in neither.
	bugListStale
	// bugReadAtStale: node 3 answers the reads at a revision 30 ms of
	// revisions early.
	bugReadAtStale

	// Bugs of leases (shard backend), one per check of leasecheck.go,
	// planted in the lessors' clocks and in the Fleet they use (lease.go).

	// bugLeaseClockSlow: every lessor's clock runs at a third of its
	// node's rate, far outside the margin: leases outlive their
	// deadline plus the bound (check 1).
	bugLeaseClockSlow
	// bugLeaseClockFast: every lessor's clock runs five times as fast:
	// leases kept alive in time expire (check 2).
	bugLeaseClockFast
	// bugLeaseDeleteIgnoresLease: the end's delete of a key is not
	// conditional on the lease (a router that drops DeleteIfLease's
	// condition): a key re-attached to a new lease is deleted by the old
	// lease's end (check 3).
	bugLeaseDeleteIgnoresLease
	// bugLeaseRevokeMissesKeys: the Fleet's scan of a lease's index keys
	// loses the last one (a scan that stops a shard short): a revoke
	// returns with that key still attached (check 4).
	bugLeaseRevokeMissesKeys

	// Bugs of transactions across shards, planted in the bank's
	// coordinators (bank.go), one per kind of anomaly bankcheck.go must
	// catch.

	// bugBankNoWriteConflict: a transfer's prewrite checks for writes
	// after a later start than its reads' (as if the shard skipped the
	// write-conflict check for the writes in between): lost updates.
	bugBankNoWriteConflict
	// bugBankReadsIgnoreLocks: reads at a revision ignore locks (read
	// Pebble directly): an audit sees half a transfer.
	bugBankReadsIgnoreLocks
	// bugBankResolverRollsBackCommitted: a resolver that finds a
	// transaction committed rolls back the secondary's lock instead of
	// committing it: atomicity broken.
	bugBankResolverRollsBackCommitted
)

// buggyBackend plants bugDropWrites, bugDiverge or bugPanic into the kv
// backend.
type buggyBackend struct {
	kvBackend
	bug simBug
}

func (b buggyBackend) newStateMachine(g multiraft.GroupID, r multiraft.ReplicaID, rd pebble.Reader) (multiraft.StateMachine, error) {
	return &buggySM{
		kvSM: kvSM{group: g},
		drop: b.bug == bugDropWrites || (b.bug == bugDiverge && uint64(r)&0xffff == 3),
		fail: b.bug == bugPanic,
	}, nil
}

type buggySM struct {
	kvSM
	drop, fail bool
}

// Apply skips one put in eight (by value) when the replica drops writes.
func (s *buggySM) Apply(ac *multiraft.ApplyContext, e multiraft.Entry) any {
	if ops := decodeCmd(e.Cmd); s.drop && len(ops) == 1 && ops[0].op == cmdPut {
		h := fnv.New32a()
		h.Write([]byte(ops[0].value))
		if h.Sum32()%8 == 0 {
			return nil
		}
	}
	if ops := decodeCmd(e.Cmd); s.fail && len(ops) == 1 && ops[0].value == "c0.20" {
		panic("sim: planted panic")
	}
	return s.kvSM.Apply(ac, e)
}
