package shard

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2"

	"github.com/flotilla-kv/flotilla/internal/keys"
	"github.com/flotilla-kv/flotilla/multiraft"
)

// Apply applies one committed command and returns its outcome: a *Result
// if it applied (or had already applied, for an exactly-once retry), or an
// error if it was refused, in which case it wrote nothing. See the package
// doc for the order of checks. An entry with an empty command (a Raft no-op)
// returns nil. Called only by the worker owning the group.
func (sm *StateMachine) Apply(ac *multiraft.ApplyContext, e multiraft.Entry) any {
	if len(e.Cmd) == 0 {
		return nil
	}
	sm.watched = sm.feed.Load() != nil
	sm.unwatched = sm.unwatched || !sm.watched
	res := sm.apply(ac, e)
	// The decoded command aliases e.Cmd, which the engine reuses.
	sm.cmd.reset()
	return res
}

func (sm *StateMachine) apply(ac *multiraft.ApplyContext, e multiraft.Entry) any {
	desc := sm.desc.Load()
	if desc == nil {
		panic(fmt.Sprintf("shard: uninitialised shard %d (replica %d) applying entry %d", sm.shard, sm.replica, e.Index))
	}
	c := &sm.cmd
	if err := DecodeCommand(e.Cmd, c); err != nil {
		return err
	}
	b := ac.Batch
	h := &c.Header
	if h.ClientID != 0 {
		if r := sm.clients.lookup(h.ClientID, e.Index); r != nil {
			if h.Seq < r.seq {
				return fmt.Errorf("%w: client %d sent %d, last applied %d", ErrStaleSequence, h.ClientID, h.Seq, r.seq)
			}
			if h.Seq == r.seq {
				return sm.recordedResult(b, h.ClientID)
			}
		}
	}
	if err := c.checkLimits(&sm.cfg); err != nil {
		return err
	}
	if err := c.checkAgainst(desc); err != nil {
		return err
	}

	if c.Kind.writesData() && c.Revision <= sm.lastRev {
		return fmt.Errorf("%w: revision %d, shard %d is at %d", ErrStaleRevision, c.Revision, sm.shard, sm.lastRev)
	}
	if err := sm.checkUnlocked(c); err != nil {
		return err
	}
	if c.Kind == KindPut && c.Lease != 0 && c.Revision > c.LeaseUntil {
		return fmt.Errorf("%w: revision %d, lease %d promised through %d", ErrLeasePromise, c.Revision, c.Lease, c.LeaseUntil)
	}
	if c.Kind == KindTxn {
		if err := c.Txn.checkPromises(c.Revision); err != nil {
			return err
		}
	}

	// The command applies: from here on every path writes.
	var res *Result
	switch c.Kind {
	case KindPut:
		sm.setUser(b, c.Key, c.Value, c.Revision, c.Lease)
		res = sm.writeResult(c.Revision)
	case KindDelete:
		res = sm.writeResult(c.Revision)
		res.Found = sm.deleteUser(b, c.Key, c.Revision, c.Lease)
	case KindCompareAndSwap:
		res = sm.applyCAS(b, c)
	case KindBatch:
		for i := range c.Ops {
			if op := &c.Ops[i]; op.Delete {
				sm.deleteUser(b, op.Key, c.Revision, 0)
			} else {
				sm.setUser(b, op.Key, op.Value, c.Revision, 0)
			}
		}
		res = sm.writeResult(c.Revision)
	case KindTxn:
		res = sm.writeResult(c.Revision)
		res.Txn = sm.applyTxn(b, c.Txn, c.Revision)
		res.Succeeded = res.Txn.Succeeded
	case KindSplit:
		return sm.applySplit(ac, e.Index, c, desc)
	case KindChecksum:
		return sm.applyChecksum(b, e.Index, desc)
	case KindResolve:
		// Never refused: a revision at or below the shard's last has
		// nothing left to resolve.
		if c.Revision > sm.lastRev {
			sm.setLastRevision(c.Revision)
		}
		res = &Result{Succeeded: true, Revision: sm.lastRev}
	case KindCompact:
		sm.raiseCompaction(b, c.Revision)
		res = &Result{Succeeded: true, Revision: sm.compactRev}
	case KindPrewrite, KindCommitTxn, KindRollbackTxn:
		var err error
		switch c.Kind {
		case KindPrewrite:
			res, err = sm.applyPrewrite(b, c)
		case KindCommitTxn:
			res, err = sm.applyCommitTxn(b, c)
		default:
			res, err = sm.applyRollbackTxn(b, c)
		}
		if err != nil {
			return err // refused before writing anything
		}
	case KindCheckTxn:
		var err error
		if res, err = sm.applyCheckTxn(b, c); err != nil {
			return err // refused before writing anything
		}
	case KindGC:
		res = sm.applyGC(b, c)
	default:
		panic(fmt.Sprintf("shard: checked command of unknown kind %d", c.Kind))
	}
	if c.Kind.writesData() {
		sm.setLastRevision(c.Revision)
	}
	sm.recordClient(b, h, e.Index, res)
	return res
}

// writeResult is the result of a write that applied at rev.
func (sm *StateMachine) writeResult(rev uint64) *Result {
	return &Result{Succeeded: true, Revision: rev}
}

// setLastRevision records rev as the revision of the shard's last write.
// FinishApply stores it, once for all the writes of a round.
func (sm *StateMachine) setLastRevision(rev uint64) {
	sm.lastRev = rev
	sm.revDirty = true
}

// FinishApply ends the round's run of Apply calls (see
// multiraft.ApplyFinisher): it stores the shard's last revision into the
// round's batch if a write raised it, and closes the meta iterator.
//
// Storing the revision once per round instead of once per write spares
// every write but the round's last an insert into the batch and the
// memtable and its bytes in the WAL: nobody reads the record back before
// the batch commits (the state machine keeps lastRev in memory; a
// restart, a snapshot or the right half of a split reads what the
// committed batch holds), and the batch commits whole or not at all.
func (sm *StateMachine) FinishApply(ac *multiraft.ApplyContext) {
	if sm.revDirty {
		sm.revDirty = false
		mustWrite(ac.Batch.Set(sm.revKey, binary.BigEndian.AppendUint64(sm.revBuf[:0], sm.lastRev), nil))
	}
	sm.closeMetaIter()
}

// metaCacheKeys bounds how many keys' metas a state machine keeps in
// memory (see StateMachine.metas): with keys of 16 bytes, about 100 KiB
// per busy shard.
const metaCacheKeys = 1024

// latest reads key's meta, from memory if the state machine has it, else
// through the batch, so that earlier writes of the same batch are visible
// (see mvcc.go). A read error panics (see mustRead).
func (sm *StateMachine) latest(b *pebble.Batch, key []byte) (keyMeta, bool) {
	if m, ok := sm.metas[string(key)]; ok {
		return m, true
	}
	it := sm.metaIter(b)
	sm.metaKey = keys.AppendMVCCPrefix(sm.metaKey[:0], key)
	if !it.SeekPrefixGE(sm.metaKey) || !bytes.Equal(it.Key(), sm.metaKey) {
		mustRead(it.Error())
		return keyMeta{}, false
	}
	v, err := it.ValueAndErr()
	mustRead(err)
	m, err := decodeKeyMeta(v)
	if err != nil {
		panic(fmt.Sprintf("shard: shard %d: meta of %q: %v", sm.shard, key, err))
	}
	sm.cacheMeta(key, m)
	return m, true
}

// metaIterOptions are the options of the meta iterator: it consults the
// bloom filters of the bottom level too, which Pebble's Get never does.
//
// Why an iterator and not Get: the meta read that misses the cache is
// mostly a key's first write, of a key that does not exist. Get finds
// that out in the bottom level by reading (and, right after a compaction
// rewrote the level, decompressing) the 32 KiB data block where the key
// would be; with the filters the iterator skips the table, reading a
// filter block once per table instead of a data block per key. One
// iterator serves the round's misses of the shard (metaIter). With it and
// the revision stored once per round (FinishApply), medians of 5 runs
// (go test -bench BenchmarkApplyPut -benchtime 20000x -count 5):
// BenchmarkApplyPutNewKeys 2.25 µs per write instead of 3.97,
// BenchmarkApplyPut 5.3 instead of 7.1, 2 allocations instead of 4; in the
// nodes' CPU profiles of the bench's write workload (100 clients), the
// state machine's Apply took 5.7% of the samples instead of 10.7%.
var metaIterOptions = pebble.IterOptions{UseL6Filters: true}

// metaIter returns the iterator for meta reads through b, made at the
// round's first miss and closed by FinishApply. A later call refreshes its
// view of b (SetOptions with the same options, Pebble's fast path), so it
// sees the writes the round made since.
func (sm *StateMachine) metaIter(b *pebble.Batch) *pebble.Iterator {
	if sm.metaIt != nil && sm.metaItBatch == b {
		sm.metaIt.SetOptions(&metaIterOptions)
		return sm.metaIt
	}
	sm.closeMetaIter()
	it, err := b.NewIter(&metaIterOptions)
	mustRead(err)
	sm.metaIt, sm.metaItBatch = it, b
	return it
}

// closeMetaIter closes the meta iterator, if one is open.
func (sm *StateMachine) closeMetaIter() {
	if sm.metaIt == nil {
		return
	}
	it := sm.metaIt
	sm.metaIt, sm.metaItBatch = nil, nil
	mustRead(it.Close())
}

// cacheMeta keeps key's meta in memory, making room by forgetting another
// key's if need be (which one does not matter: a miss reads Pebble).
func (sm *StateMachine) cacheMeta(key []byte, m keyMeta) {
	if _, ok := sm.metas[string(key)]; !ok && len(sm.metas) >= metaCacheKeys {
		for k := range sm.metas {
			delete(sm.metas, k)
			break
		}
	}
	sm.metas[string(key)] = m
}

// latestValue returns the value of key's newest version, which m (key's
// meta) says exists, read through the batch into sm.valBuf.
func (sm *StateMachine) latestValue(b *pebble.Batch, key []byte, m keyMeta) []byte {
	sm.keyBuf = keys.AppendMVCCKey(sm.keyBuf[:0], key, m.mod)
	v, closer, err := b.Get(sm.keyBuf)
	mustRead(err)
	live, _, value, err := decodeVersion(v)
	if err != nil || !live {
		panic(fmt.Sprintf("shard: shard %d: newest version of %q at %d: live %v, %v", sm.shard, key, m.mod, live, err))
	}
	sm.valBuf = append(sm.valBuf[:0], value...)
	closer.Close()
	return sm.valBuf
}

// setMeta writes key's meta, and keeps it in memory.
func (sm *StateMachine) setMeta(b *pebble.Batch, key []byte, m keyMeta) {
	sm.cacheMeta(key, m)
	sm.metaKey = keys.AppendMVCCPrefix(sm.metaKey[:0], key)
	sm.metaBuf = appendKeyMeta(sm.metaBuf[:0], m)
	mustWrite(b.Set(sm.metaKey, sm.metaBuf, nil))
}

// pruneEvery is how often a key's history is pruned: at every
// pruneEvery-th version since the key's creation, and at its deletion.
// Pruning seeks among the key's versions; doing it on every write would
// double a write's reads, and between two prunes a key gains at most
// pruneEvery versions past the horizon.
const pruneEvery = 8

// raiseCompaction raises the shard's compaction point to rev, if that is
// higher: reads and watches below it are refused from then on.
func (sm *StateMachine) raiseCompaction(b *pebble.Batch, rev uint64) {
	if rev <= sm.compactRev {
		return
	}
	sm.compactRev = rev
	mustWrite(b.Set(keys.ShardKey(uint64(sm.shard), keys.ShardCompacted), binary.BigEndian.AppendUint64(sm.revBuf[:0], rev), nil))
}

// belowLocks lowers the horizon h of a prune by retention to just below
// the start of every transaction holding a lock on the shard, so that
// the compaction point never passes the start of a running transaction
// that locked keys here: the history it was read at stays readable, on
// every replica alike (the locks are replicated state), until its locks
// are committed or rolled back (by its coordinator, a reader or the
// lock sweeper, within the bound shard/gc.go states). A transaction
// still in its reads, with no lock yet, is not seen here: past the
// history retention its reads answer Compacted (see gc.go).
func (sm *StateMachine) belowLocks(h uint64) uint64 {
	for _, l := range sm.locks {
		if l.Start <= h {
			h = l.Start - 1
		}
	}
	return h
}

// pruneVersions deletes the versions of key that no read at the horizon of
// a write at rev or later can see: every version older than the newest one
// at or below the horizon, which a read at the horizon sees and so stays.
// The horizon is rev minus the retention, or just below the shard's
// compaction point if that is higher; a prune raises the compaction point
// to just above its horizon. So the compaction point is always above
// every horizon pruned at: a read at or above it finds every key's newest
// version at or below the read, and a watch from it finds every version
// at or above it with the version before it. A shard that never pruned
// refuses no read. A key's history holds its versions of the retention
// span, one before it, and up to pruneEvery more until the next prune.
// It depends only on the stored versions, the write's revision, the
// compaction point and the Config, so every replica deletes the same.
//
// oldest is the revision of the key's oldest version (0: unknown); a
// horizon below it has nothing to delete, which saves the seek. It
// returns the oldest version's revision after the prune.
func (sm *StateMachine) pruneVersions(b *pebble.Batch, key []byte, rev, oldest uint64) uint64 {
	var horizon uint64
	if sm.compactRev > 0 {
		horizon = sm.compactRev - 1
	}
	if span := sm.cfg.retentionRevisions(); rev > span && rev-span > horizon && oldest <= rev-span {
		horizon = max(horizon, sm.belowLocks(rev-span))
	}
	if horizon == 0 || oldest > horizon {
		return oldest
	}
	sm.raiseCompaction(b, horizon+1)
	sm.metaKey = keys.AppendMVCCPrefix(sm.metaKey[:0], key)
	it, err := b.NewIter(&pebble.IterOptions{LowerBound: sm.metaKey, UpperBound: keys.ImmediateSuccessor(sm.iterBuf[:0], sm.metaKey)})
	mustRead(err)
	sm.keyBuf = keys.AppendMVCCKey(sm.keyBuf[:0], key, horizon)
	kept := false
	for valid := it.SeekGE(sm.keyBuf); valid; valid = it.Next() {
		_, at, ok := keys.DecodeMVCCKey(it.Key())
		if !ok {
			break
		}
		if kept {
			mustWrite(b.Delete(it.Key(), nil))
			continue
		}
		kept, oldest = true, at // the first: what a read at the horizon sees
	}
	mustRead(it.Error())
	mustRead(it.Close())
	return oldest
}

// setUser writes the version of key at rev holding value, attached to
// lease (0: none).
func (sm *StateMachine) setUser(b *pebble.Batch, key, value []byte, rev, lease uint64) {
	m := keyMeta{live: true, mod: rev, oldest: rev, versionMeta: versionMeta{create: rev, version: 1, lease: lease}}
	if cur, ok := sm.latest(b, key); ok {
		m.oldest = cur.oldest
		if cur.live {
			m.create, m.version = cur.create, cur.version+1
		}
	}
	sm.keyBuf = keys.AppendMVCCKey(sm.keyBuf[:0], key, rev)
	sm.recBuf = appendVersionValue(sm.recBuf[:0], m.versionMeta, value)
	mustWrite(b.Set(sm.keyBuf, sm.recBuf, nil))
	if m.version%pruneEvery == 0 {
		m.oldest = sm.pruneVersions(b, key, rev, m.oldest)
	}
	sm.setMeta(b, key, m)
	if sm.watched {
		sm.events = append(sm.events, Event{KV: KeyValue{
			Key: bytes.Clone(key), Value: bytes.Clone(value),
			CreateRevision: m.create, ModRevision: rev, Version: m.version, Lease: m.lease,
		}})
	}
}

// deleteUser writes a tombstone of key at rev, if key exists and, with a
// non-zero lease, is attached to that lease. It reports whether it wrote
// one.
func (sm *StateMachine) deleteUser(b *pebble.Batch, key []byte, rev, lease uint64) bool {
	cur, ok := sm.latest(b, key)
	if !ok || !cur.live || lease != 0 && cur.lease != lease {
		return false
	}
	sm.keyBuf = keys.AppendMVCCKey(sm.keyBuf[:0], key, rev)
	mustWrite(b.Set(sm.keyBuf, tombstoneVersion, nil))
	sm.setMeta(b, key, keyMeta{mod: rev, oldest: sm.pruneVersions(b, key, rev, cur.oldest)})
	if sm.watched {
		sm.events = append(sm.events, Event{Delete: true, KV: KeyValue{Key: bytes.Clone(key), ModRevision: rev}})
	}
	return true
}

// applyCAS compares the key's current value, read through the batch so that
// earlier commands of the same batch are visible, and swaps on a match.
func (sm *StateMachine) applyCAS(b *pebble.Batch, c *Command) *Result {
	m, found := sm.latest(b, c.Key)
	found = found && m.live
	var cur []byte
	if found {
		cur = sm.latestValue(b, c.Key, m)
	}
	var res *Result
	switch {
	case c.ExpectAbsent && !found, !c.ExpectAbsent && found && bytes.Equal(cur, c.Expected):
		sm.setUser(b, c.Key, c.Value, c.Revision, 0)
		res = sm.writeResult(c.Revision)
	case found:
		res = &Result{Found: true, Value: append([]byte{}, cur...), Revision: c.Revision}
	default:
		res = &Result{Revision: c.Revision}
	}
	return res
}

// recordClient deletes expired client records and, unless h opts out,
// records h's request and its result. Every applied command calls it.
func (sm *StateMachine) recordClient(b *pebble.Batch, h *Header, index uint64, res *Result) {
	for {
		id, ok := sm.clients.popExpired(index)
		if !ok {
			break
		}
		mustWrite(b.Delete(sm.clientKey(id), nil))
	}
	if h.ClientID == 0 {
		return
	}
	if evicted, ok := sm.clients.upsert(h.ClientID, h.Seq, index); ok {
		mustWrite(b.Delete(sm.clientKey(evicted), nil))
	}
	sm.recBuf = appendClientRecord(sm.recBuf[:0], h.Seq, index, res)
	mustWrite(b.Set(sm.clientKey(h.ClientID), sm.recBuf, nil))
}

// recordedResult returns the result stored for client id.
func (sm *StateMachine) recordedResult(b *pebble.Batch, id uint64) *Result {
	v, closer, err := b.Get(sm.clientKey(id))
	if err != nil {
		panic(fmt.Sprintf("shard: shard %d: client %d indexed but not stored: %v", sm.shard, id, err))
	}
	defer closer.Close()
	_, _, res, err := decodeClientRecord(v)
	if err != nil {
		panic(fmt.Sprintf("shard: shard %d: client %d record %x: %v", sm.shard, id, v, err))
	}
	return res
}

// applySplit shrinks the shard to [Start, key) and creates the right-hand
// shard [key, End) with the new shard ID and mapped replicas, both at the
// next Version. The caller has checked c against desc.
func (sm *StateMachine) applySplit(ac *multiraft.ApplyContext, index uint64, c *Command, desc *Descriptor) *Result {
	b := ac.Batch
	left := desc.Clone()
	left.End = bytes.Clone(c.Key)
	left.Epoch.Version++
	right := Descriptor{
		ShardID:  c.NewShard,
		Start:    bytes.Clone(c.Key),
		End:      bytes.Clone(desc.End),
		Epoch:    left.Epoch,
		Replicas: make([]multiraft.Replica, 0, len(desc.Replicas)),
	}
	var mine multiraft.ReplicaID
	for _, m := range c.NewReplicas {
		old, _ := desc.Replica(m.Old)
		right.Replicas = append(right.Replicas, multiraft.Replica{ReplicaID: m.New, NodeID: old.NodeID, Learner: old.Learner})
		if m.Old == ac.Replica {
			mine = m.New
		}
	}
	slices.SortFunc(right.Replicas, func(a, b multiraft.Replica) int { return cmp.Compare(a.ReplicaID, b.ReplicaID) })
	if err := right.Validate(); err != nil {
		panic(fmt.Sprintf("shard: split of %s made invalid %s: %v", desc, &right, err))
	}

	mustWrite(b.Set(sm.descKey, left.AppendEncoded(sm.recBuf[:0]), nil))
	l, r := left.Clone(), right.Clone()
	res := &Result{Succeeded: true, Left: &l, Right: &r}
	sm.recordClient(b, &c.Header, index, res)

	// The watchers of what leaves end where the data is final, below any
	// lock that may still commit (see percolator.go).
	splitRev := sm.publishedBound()
	hosted := mine != 0 && sm.createGroup(ac, right.ShardID, mine, right.Membership())
	sm.splitLocks(b, c.Key, right.ShardID, hosted)
	if hosted {
		// This node hosts the right-hand shard: give it its descriptor, the
		// revision of the last write (the right-hand shard's versions are
		// the left's, and its writes must come after them) and a copy of
		// the client table; the engine writes its Raft state.
		mustWrite(b.Set(keys.ShardKey(uint64(right.ShardID), keys.ShardDescriptor), right.AppendEncoded(nil), nil))
		if sm.lastRev != 0 { // no key means 0: one representation of each state
			mustWrite(b.Set(keys.ShardKey(uint64(right.ShardID), keys.ShardRevision), binary.BigEndian.AppendUint64(nil, sm.lastRev), nil))
		}
		if sm.compactRev != 0 {
			mustWrite(b.Set(keys.ShardKey(uint64(right.ShardID), keys.ShardCompacted), binary.BigEndian.AppendUint64(nil, sm.compactRev), nil))
		}
		sm.copyClientTable(b, right.ShardID)
	} else {
		// This node hosts no right-hand replica from the split: this
		// replica is no longer a member (it applies entries past its own
		// removal), or the right-hand replica it would create here was
		// removed already, or another replica of the right-hand shard,
		// still empty, waits here for a snapshot (the engine said so).
		// Either way the data of [key, End) on this node belongs to nobody
		// now (a snapshot brings its own).
		lo, hi := keys.UserSpan(right.Start, right.End)
		mustWrite(b.DeleteRange(lo, hi, nil))
	}
	sm.setDescriptor(&left)
	if sm.watched {
		// The watchers of what left end here (see watch.go).
		sm.events = append(sm.events, Event{split: true, KV: KeyValue{ModRevision: splitRev}})
	}
	return res
}

// copyClientTable copies every live client record into the client table
// of shard to, with stamp 0.
func (sm *StateMachine) copyClientTable(b *pebble.Batch, to ShardID) {
	for r := sm.clients.head; r != nil; r = r.next {
		v, closer, err := b.Get(sm.clientKey(r.id))
		if err != nil {
			panic(fmt.Sprintf("shard: shard %d: client %d indexed but not stored: %v", sm.shard, r.id, err))
		}
		rec, err := restampClientRecord(nil, v, 0)
		closer.Close()
		if err != nil {
			panic(fmt.Sprintf("shard: shard %d: client %d record: %v", sm.shard, r.id, err))
		}
		mustWrite(b.Set(keys.ShardClientKey(uint64(to), r.id), rec, nil))
	}
}

// ApplyMembership records the group's new membership in the descriptor and
// bumps its ConfVer. A membership whose replicas equal the descriptor's
// (say, only the joint flag changed, or the engine repeats a notification)
// changes nothing, so ConfVer counts real changes only. An uninitialised
// state machine ignores it: its descriptor arrives with a snapshot. Called
// only by the worker owning the group.
func (sm *StateMachine) ApplyMembership(ac *multiraft.ApplyContext, index uint64, m multiraft.Membership) {
	desc := sm.desc.Load()
	if desc == nil {
		return
	}
	repls := slices.Clone(m.Replicas)
	slices.SortFunc(repls, func(a, b multiraft.Replica) int { return cmp.Compare(a.ReplicaID, b.ReplicaID) })
	if slices.Equal(desc.Replicas, repls) {
		return
	}
	nd := desc.Clone()
	nd.Replicas = repls
	nd.Epoch.ConfVer++
	mustWrite(ac.Batch.Set(sm.descKey, nd.AppendEncoded(nil), nil))
	sm.setDescriptor(&nd)
}
