package shard

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/flotilla-kv/flotilla/internal/keys"
	"github.com/flotilla-kv/flotilla/placement/tso"
)

// Garbage collection of history
//
// Writes prune the overwritten versions of the keys they write (see
// pruneVersions), but two kinds of history are never written again and
// so never pruned: the last versions and meta of a deleted key, and the
// outcome records of transactions across shards (percolator.go). A
// collection pass removes them, in bounded steps:
//
//  1. The shard's leader chooses candidates (PlanGC) from its own data,
//     outside the apply loop: up to a budget of keys and records
//     examined, resuming where its last pass stopped (GCCursor), and at
//     most Config.MaxBatchOps candidates.
//  2. It proposes them in one KindGC command, stamped with a fresh
//     revision like a Resolve.
//  3. Apply raises the shard's resolved revision to the command's
//     revision, as a Resolve does, then checks each candidate against the
//     rules below, with the replicated state only, and deletes those that
//     pass. So every replica deletes the same, whatever the leader saw
//     when it chose, and a candidate that stopped qualifying (a key
//     written again, a split that moved it away) is simply kept.
//
// # Deleted keys
//
// A key is collected, its meta and every version, when its meta says it
// is deleted and its tombstone's revision is below the shard's
// compaction point. Nothing that the shard still serves changes:
//
//   - A read at r at or above the compaction point found the tombstone
//     (the newest version at or below r, since every version of the key
//     is at or below the tombstone, below r): the key did not exist. With
//     no version, it does not exist either.
//   - A watch from w at or above the compaction point had no event of
//     the key to deliver (its versions are all below w), and a later
//     write that creates the key again has no previous value either way
//     (a tombstone is no value).
//   - A later write of the key finds no meta, as if the key never
//     existed: it creates the key at version 1, which is what it did
//     after a tombstone.
//
// One reader of a meta needs more than that: a prewrite refuses a key
// written after its transaction's start (ErrWriteConflict), and a
// collected tombstone no longer says when it was written. So a prewrite
// whose start is below the compaction point treats a key with no meta as
// written at the compaction point: a conflict. Such a transaction's
// snapshot is below what the shard serves anyway (its reads would be
// refused as compacted), so it loses nothing it could have had.
//
// # Versions and running transactions
//
// A transaction reads at its start S; writes prune the versions no read
// at their revision minus Config.HistoryRetention (5 minutes) can see,
// and raise the compaction point above that horizon (pruneVersions).
// A read-only transaction holds no lock, so no shard knows it runs: once
// its start falls below a shard's compaction point, its reads there are
// refused with a *CompactedError (OutOfRange to clients), never answered
// from a history with versions missing. A transaction with locks on the
// shard has done its reads (it prewrites at its commit), and the
// collection here cannot take what it still needs: it deletes only keys
// deleted below the compaction point, a key the transaction locked
// keeps its lock (its commit writes the key anew, as after a tombstone),
// and a later prewrite of the transaction on this shard treats a
// collected key as a conflict (above). The compaction point itself
// passes a lock's start only when the lock outlived the history
// retention, which the sweeper's bound (below) keeps from happening
// while the shards concerned have a leader.
//
// # Transaction outcome records
//
// The record of a transaction (primary, start S), on the primary's
// shard, is read by a late prewrite of the primary (refused once the
// outcome is decided), by a retried commit or rollback, and by a
// resolver's CheckTxn on behalf of a lock of the transaction met on any
// shard. A record is collected when, at apply time:
//
//   - the shard's resolved revision is more than Config.TxnRecordRetention
//     past S, on the oracle's clock (physical milliseconds of the two
//     timestamps): the transaction is "forgotten" by then;
//   - it is as far past the record's own writing (the record keeps the
//     shard's resolved revision then, or the deciding command's fresh
//     timestamp if higher): a transaction decided late, by a resolver
//     after an outage kept its locks past the retention, keeps its record
//     for a whole retention from then, for the resolvers of its other
//     locks, on shards that came back as late; and
//   - no lock on this shard has a start at or below S: the primary lock
//     and any lock of the transaction on the primary's own shard are
//     gone, and so is every lock of an older transaction that might yet
//     be resolved against it.
//
// Why no lock can need the record afterwards:
//
//   - No lock of the transaction is created later, on any shard: every
//     prewrite is refused (ErrTxnAborted) when its own revision is more
//     than the retention past its start. A prewrite that applies after
//     the record went has a revision above the resolved revision the
//     collection judged by (Apply refuses a write not above the last),
//     so it is refused on the primary's shard; on another shard it is a
//     late duplicate of a prewrite that applied before the outcome was
//     decided (a coordinator commits only after all its prewrites
//     applied), which finds the key written at the commit (a conflict)
//     or changes nothing the outcome decides (a lock-only mutation, the
//     delete of an absent key).
//   - A lock that exists when the record goes must be on another shard
//     (the second condition), and must have outlived the retention. The
//     rule's one assumption is that no lock does: that every lock is
//     resolved within the retention of its transaction's start.
//   - If that assumption fails, nothing is decided wrongly: a resolver's
//     CheckTxn, a commit or a rollback that finds neither record nor
//     primary lock for a forgotten transaction returns ErrTxnForgotten
//     (FailedPrecondition to clients) instead of deciding "rolled back",
//     which would have been wrong for a transaction that committed. The
//     lock then stays until an operator decides it.
//
// What bounds a lock's life. A lock is resolved by its coordinator at
// once; by a reader or writer that meets it once its TTL ran out; and,
// since a coordinator that dies after its commit point leaves locks on
// keys nobody may read for days, by its shard's leader, which sweeps
// its own expired locks (locksweep.go; a node's sweep runs every
// --lock-sweep-interval, 2 s by default). So a lock lives at most
//
//	TTL + sweep interval + resolution + time without a leader
//
// after its transaction's start: the TTL (the router's default is 5 s),
// the sweep's period, the resolution's two commands (a CheckTxn on the
// primary's shard, then a commit or rollback of the key, within the
// sweep pass's timeout of 30 s), and any time the lock's shard or its
// primary's shard goes without a leader (an election takes about a
// second; a shard that lost its quorum waits for an operator). That is
// under a minute whenever the shards concerned have a leader. The
// default retention, DefaultTxnRecordRetention, is an hour, sixty times
// that: a record goes while a lock of its transaction remains only if
// that lock's shard, or its primary's, went without a leader (or its
// nodes without a sweeper) for most of an hour, and the lock stayed for
// another hour after the transaction was decided. Then the lock's
// resolvers get the ErrTxnForgotten above, never a wrong outcome.
//
// The bound also assumes a TTL well below the retention: a lock whose
// TTL is longer than the retention is not swept before its record may
// go (once its transaction was decided and its primary lock resolved).
//
// A forgotten transaction whose primary lock still exists is not
// ambiguous: the lock means it is undecided, and CheckTxn, commit and
// rollback treat it as before.

// DefaultGCBudget is how many keys, and how many outcome records, a
// collection pass examines when its caller gives no budget.
const DefaultGCBudget = 1024

// GCStep is the body of a KindGC command: the candidates the leader
// chose. Apply collects each one that still qualifies.
type GCStep struct {
	// Keys are user keys believed deleted below the compaction point.
	Keys [][]byte
	// Txns are transactions whose outcome records are believed
	// forgotten.
	Txns []TxnRef
}

// TxnRef names a transaction across shards: its primary key and start.
type TxnRef struct {
	Primary []byte
	Start   uint64
}

// appendGCStep appends the encoding of g: uvarint n, n times bytes key;
// uvarint m, m times bytes primary, uvarint start.
func appendGCStep(dst []byte, g *GCStep) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(g.Keys)))
	for _, k := range g.Keys {
		dst = appendBytes(dst, k)
	}
	dst = binary.AppendUvarint(dst, uint64(len(g.Txns)))
	for _, t := range g.Txns {
		dst = appendBytes(dst, t.Primary)
		dst = binary.AppendUvarint(dst, t.Start)
	}
	return dst
}

// decodeGCStep decodes the body of a KindGC.
func decodeGCStep(d *decoder) *GCStep {
	g := &GCStep{}
	n := d.count(1)
	for range n {
		k := d.bytes()
		if d.err != nil {
			break
		}
		g.Keys = append(g.Keys, k)
	}
	m := d.count(2)
	for range m {
		t := TxnRef{Primary: d.bytes(), Start: d.uvarint()}
		if d.err != nil {
			break
		}
		g.Txns = append(g.Txns, t)
	}
	return g
}

// check checks g against cfg's limits.
func (g *GCStep) check(cfg *Config) error {
	if n := len(g.Keys) + len(g.Txns); n > cfg.MaxBatchOps {
		return fmt.Errorf("%w: a gc of %d candidates, limit %d", ErrBatchTooLarge, n, cfg.MaxBatchOps)
	}
	for _, k := range g.Keys {
		if err := checkKey(cfg, k); err != nil {
			return err
		}
	}
	for _, t := range g.Txns {
		if err := checkKey(cfg, t.Primary); err != nil {
			return err
		}
		if t.Start == 0 {
			return fmt.Errorf("%w: a gc of a transaction without a start", ErrBadCommand)
		}
	}
	return nil
}

// forgotten reports whether a transaction started at start is past the
// record retention at timestamp now: its outcome record may be collected,
// and it may prewrite nothing any more.
func (cfg *Config) forgotten(start, now uint64) bool {
	if cfg.TxnRecordRetention <= 0 {
		return false // records are kept forever
	}
	return tso.Physical(tso.Timestamp(now)) > tso.Physical(tso.Timestamp(start))+cfg.TxnRecordRetention.Milliseconds()
}

// applyGC applies a KindGC: it resolves the shard to the command's
// revision, then collects every candidate that qualifies (see the notes
// above). The result counts what it deleted.
func (sm *StateMachine) applyGC(b *pebble.Batch, c *Command) *Result {
	if c.Revision > sm.lastRev {
		sm.setLastRevision(c.Revision)
	}
	res := &Result{Succeeded: true}
	for _, key := range c.GC.Keys {
		if sm.collectKey(b, key) {
			res.CollectedKeys++
		}
	}
	for i := range c.GC.Txns {
		if sm.collectTxnRecord(b, &c.GC.Txns[i]) {
			res.CollectedTxns++
		}
	}
	res.Revision = sm.lastRev
	return res
}

// collectKey deletes key's meta and versions if the key is in the shard,
// deleted, and its tombstone is below the compaction point.
func (sm *StateMachine) collectKey(b *pebble.Batch, key []byte) bool {
	if !sm.holdsKey(key) {
		return false
	}
	m, ok := sm.latest(b, key)
	if !ok || m.live || m.mod >= sm.compactRev {
		return false
	}
	delete(sm.metas, string(key))
	sm.metaKey = keys.AppendMVCCPrefix(sm.metaKey[:0], key)
	it, err := b.NewIter(&pebble.IterOptions{LowerBound: sm.metaKey, UpperBound: keys.ImmediateSuccessor(sm.iterBuf[:0], sm.metaKey)})
	mustRead(err)
	for valid := it.First(); valid; valid = it.Next() {
		mustWrite(b.Delete(it.Key(), nil))
	}
	mustRead(it.Error())
	mustRead(it.Close())
	return true
}

// collectTxnRecord deletes the outcome record of t if this shard holds
// it, the transaction is forgotten at the shard's resolved revision, and
// so is the record's own writing, and no lock here started at or before
// it.
func (sm *StateMachine) collectTxnRecord(b *pebble.Batch, t *TxnRef) bool {
	if !sm.holdsKey(t.Primary) || !sm.cfg.forgotten(t.Start, sm.lastRev) {
		return false
	}
	for _, l := range sm.locks {
		if l.Start <= t.Start {
			return false
		}
	}
	_, _, decided, ok := sm.txnRecordDecided(b, t.Primary, t.Start)
	if !ok || !sm.cfg.forgotten(max(t.Start, decided), sm.lastRev) {
		return false
	}
	mustWrite(b.Delete(txnRecordKey(sm.shard, t.Primary, t.Start), nil))
	return true
}

// forgottenUndecided reports whether the transaction (primary, start),
// which has no outcome record here, is forgotten and has no primary lock
// here either: its outcome may have been collected, and nobody can tell
// whether it committed (see the notes above).
func (sm *StateMachine) forgottenUndecided(primary []byte, start uint64) bool {
	if l, ok := sm.locks[string(primary)]; ok && l.Start == start {
		return false
	}
	return sm.cfg.forgotten(start, sm.lastRev)
}

// GCCursor is where a collection pass of one shard resumes: the next
// user key and the next outcome record to examine. The zero GCCursor
// starts at the beginning of the shard.
type GCCursor struct {
	// Key is the next user key to examine (nil: the shard's start).
	Key []byte
	// Txn is the next outcome record to examine, as its key after the
	// shard's record prefix (nil: the first).
	Txn []byte
}

// GCPlan is what PlanGC chose.
type GCPlan struct {
	// Step holds the candidates; it is empty when nothing qualified.
	Step GCStep
	// Next is where the next pass resumes.
	Next GCCursor
	// Keys and Txns count what the pass examined; Wrapped says it
	// reached the end of both the keys and the records, so Next is the
	// zero GCCursor: the next pass starts a new round.
	Keys, Txns int
	Wrapped    bool
}

// Empty reports whether the plan has no candidate.
func (p *GCPlan) Empty() bool { return len(p.Step.Keys) == 0 && len(p.Step.Txns) == 0 }

// PlanGC chooses the candidates of a collection pass over the shard
// desc describes, from r (the node's Pebble, or a snapshot of it), with
// cfg (the Config every replica runs with): deleted keys whose tombstone
// is below the compaction point r holds, and outcome records of
// transactions forgotten at timestamp now (a fresh oracle timestamp; 0
// chooses no record). It
// examines at most budget keys and budget records (budget <= 0:
// DefaultGCBudget) from cur on, and chooses at most cfg.MaxBatchOps
// candidates. It only reads; Apply decides again what it deletes. The
// Store's CollectGarbage calls it; so does the simulator, which proposes
// its commands itself.
func PlanGC(r pebble.Reader, cfg Config, desc *Descriptor, cur GCCursor, now uint64, budget int) (GCPlan, error) {
	cfg = cfg.withDefaults()
	if budget <= 0 {
		budget = DefaultGCBudget
	}
	compacted, err := loadUint64(r, keys.ShardKey(uint64(desc.ShardID), keys.ShardCompacted))
	if err != nil {
		return GCPlan{}, err
	}
	var p GCPlan
	room := cfg.MaxBatchOps
	if p.Next.Key, err = planDeletedKeys(r, desc, cur.Key, compacted, budget, &p, &room); err != nil {
		return GCPlan{}, err
	}
	if cfg.TxnRecordRetention > 0 {
		if p.Next.Txn, err = planTxnRecords(r, &cfg, desc, cur.Txn, now, budget, &p, &room); err != nil {
			return GCPlan{}, err
		}
	}
	p.Wrapped = p.Next.Key == nil && p.Next.Txn == nil
	return p, nil
}

// planDeletedKeys is PlanGC's pass over the keys' metas, from the key
// from; it returns the key to resume at (nil: the start).
func planDeletedKeys(r pebble.Reader, desc *Descriptor, from []byte, compacted uint64, budget int, p *GCPlan, room *int) ([]byte, error) {
	lo, hi := keys.UserSpan(desc.Start, desc.End)
	if len(from) > 0 && desc.ContainsKey(from) {
		lo = keys.AppendMVCCPrefix(nil, from)
	}
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, err
	}
	var next, resume []byte
	for valid := it.First(); valid; valid = it.SeekGE(next) {
		k, ok := keys.MVCCMeta(it.Key())
		if ok {
			if p.Keys == budget || *room == 0 {
				resume = bytes.Clone(k)
				break
			}
			p.Keys++
			v, err := it.ValueAndErr()
			if err != nil {
				it.Close()
				return nil, err
			}
			m, err := decodeKeyMeta(v)
			if err != nil {
				it.Close()
				return nil, fmt.Errorf("shard: shard %d: meta of %q: %w", desc.ShardID, k, err)
			}
			if !m.live && compacted > 0 && m.mod < compacted {
				p.Step.Keys = append(p.Step.Keys, bytes.Clone(k))
				*room--
			}
		}
		next = keys.ImmediateSuccessor(next[:0], keys.MVCCPrefix(it.Key()))
	}
	if err := it.Close(); err != nil {
		return nil, err
	}
	return resume, nil
}

// planTxnRecords is PlanGC's pass over the outcome records, from the
// record from (its key after the prefix); it returns the record to
// resume at (nil: the first).
func planTxnRecords(r pebble.Reader, cfg *Config, desc *Descriptor, from []byte, now uint64, budget int, p *GCPlan, room *int) ([]byte, error) {
	prefix, hi := keys.ShardSpan(uint64(desc.ShardID), keys.ShardTxn)
	lo := append(bytes.Clone(prefix), from...)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, err
	}
	var resume []byte
	for valid := it.First(); valid; valid = it.Next() {
		k := it.Key()
		if len(k) < len(prefix)+8 {
			it.Close()
			return nil, fmt.Errorf("%w: shard %d: malformed transaction record key %x", ErrBadDescriptor, desc.ShardID, k)
		}
		if p.Txns == budget || *room == 0 {
			resume = bytes.Clone(k[len(prefix):])
			break
		}
		p.Txns++
		start := binary.BigEndian.Uint64(k[len(k)-8:])
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return nil, err
		}
		_, _, decided, err := decodeTxnRecord(v)
		if err != nil {
			it.Close()
			return nil, fmt.Errorf("%w: shard %d: transaction record %x: %v", ErrBadDescriptor, desc.ShardID, k, err)
		}
		if cfg.forgotten(max(start, decided), now) {
			p.Step.Txns = append(p.Step.Txns, TxnRef{Primary: bytes.Clone(k[len(prefix) : len(k)-8]), Start: start})
			*room--
		}
	}
	if err := it.Close(); err != nil {
		return nil, err
	}
	return resume, nil
}

// GCStats is what one CollectGarbage call did.
type GCStats struct {
	// Keys and Txns count the keys and outcome records examined;
	// Candidates those proposed; CollectedKeys and CollectedTxns those
	// deleted.
	Keys, Txns                   int
	Candidates                   int
	CollectedKeys, CollectedTxns int
	// Wrapped says the pass reached the end of the shard's keys and
	// records: the next one starts a new round.
	Wrapped bool
}

// CollectGarbage runs one collection pass over shard, which this node
// must lead (a follower refuses with *multiraft.NotLeaderError): it
// chooses candidates among at most budget keys and budget outcome
// records (budget <= 0: DefaultGCBudget), resuming where the last pass on
// this node stopped, and if it found any, proposes one KindGC and waits
// for it to apply. A node calls it periodically for the shards it leads;
// the work per call is bounded, so a shard of millions of keys is
// collected over many calls, never blocking its worker for long. Safe
// for concurrent use, though concurrent passes over one shard examine
// the same keys.
func (s *Store) CollectGarbage(ctx context.Context, shard ShardID, budget int) (GCStats, error) {
	e, _, d, err := s.lookup(shard)
	if err != nil {
		if errors.Is(err, ErrShardNotFound) {
			s.forgetGCCursor(shard)
		}
		return GCStats{}, err
	}
	if err := e.CheckLeader(shard); err != nil {
		return GCStats{}, err
	}
	snap := e.DB().NewSnapshot()
	defer snap.Close()
	// The records' age is judged at a fresh timestamp (shared with the
	// writes' stamping): the command's own revision, stamped later, is
	// above it, so what qualifies here still qualifies at apply by age. A
	// shard without records (most) needs none.
	var now uint64
	if s.cfg.TxnRecordRetention <= 0 {
		// Records are kept forever: no timestamp, no record examined.
	} else if has, err := hasTxnRecords(snap, shard); err != nil {
		return GCStats{}, fmt.Errorf("shard: planning the collection of shard %d: %w", shard, err)
	} else if has {
		if now, err = s.Now(ctx); err != nil {
			return GCStats{}, fmt.Errorf("shard: a timestamp for collecting shard %d: %w", shard, err)
		}
	}
	s.gc.Lock()
	cur := s.gc.cursors[shard]
	s.gc.Unlock()
	p, err := PlanGC(snap, s.cfg, d, cur, now, budget)
	if err != nil {
		return GCStats{}, fmt.Errorf("shard: planning the collection of shard %d: %w", shard, err)
	}
	st := GCStats{Keys: p.Keys, Txns: p.Txns, Candidates: len(p.Step.Keys) + len(p.Step.Txns), Wrapped: p.Wrapped}
	if !p.Empty() {
		res, err := s.Execute(ctx, shard, &Command{Kind: KindGC, GC: &p.Step})
		if err != nil {
			// The cursor stays: the next pass examines the same keys.
			return st, err
		}
		st.CollectedKeys, st.CollectedTxns = res.CollectedKeys, res.CollectedTxns
	}
	s.gc.Lock()
	s.gc.cursors[shard] = p.Next
	s.gc.Unlock()
	return st, nil
}

// hasTxnRecords reports whether r holds any outcome record of shard.
func hasTxnRecords(r pebble.Reader, shard ShardID) (bool, error) {
	lo, hi := keys.ShardSpan(uint64(shard), keys.ShardTxn)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return false, err
	}
	has := it.First()
	return has, it.Close()
}

// forgetGCCursor drops shard's cursor (the shard left this node).
func (s *Store) forgetGCCursor(shard ShardID) {
	s.gc.Lock()
	delete(s.gc.cursors, shard)
	s.gc.Unlock()
}
