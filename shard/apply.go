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

	// The command applies: from here on every path writes.
	var res *Result
	switch c.Kind {
	case KindPut:
		sm.setUser(b, c.Key, c.Value, c.Revision)
		res = sm.writeResult(c.Revision)
	case KindDelete:
		sm.deleteUser(b, c.Key, c.Revision)
		res = sm.writeResult(c.Revision)
	case KindCompareAndSwap:
		res = sm.applyCAS(b, c)
	case KindBatch:
		for i := range c.Ops {
			if op := &c.Ops[i]; op.Delete {
				sm.deleteUser(b, op.Key, c.Revision)
			} else {
				sm.setUser(b, op.Key, op.Value, c.Revision)
			}
		}
		res = sm.writeResult(c.Revision)
	case KindSplit:
		return sm.applySplit(ac, e.Index, c, desc)
	case KindChecksum:
		return sm.applyChecksum(b, e.Index, desc)
	default:
		panic(fmt.Sprintf("shard: checked command of unknown kind %d", c.Kind))
	}
	if c.Kind.writesData() {
		sm.setLastRevision(b, c.Revision)
	}
	sm.recordClient(b, h, e.Index, res)
	return res
}

// writeResult is the result of a write that applied at rev.
func (sm *StateMachine) writeResult(rev uint64) *Result {
	return &Result{Succeeded: true, Revision: rev}
}

// setLastRevision records rev as the revision of the shard's last write.
func (sm *StateMachine) setLastRevision(b *pebble.Batch, rev uint64) {
	sm.lastRev = rev
	mustWrite(b.Set(sm.revKey, binary.BigEndian.AppendUint64(sm.revBuf[:0], rev), nil))
}

// latest reads key's newest version through the batch, so that earlier
// writes of the same batch are visible, for a write at rev, and removes
// the versions of key the write's retention horizon leaves unreadable
// (see pruneVersions). A read error panics (see mustRead).
func (sm *StateMachine) latest(b *pebble.Batch, key []byte, rev uint64) (KeyValue, bool) {
	it, err := b.NewIter(nil)
	mustRead(err)
	var kv KeyValue
	var found bool
	kv, found, sm.keyBuf, err = readVersion(it, sm.keyBuf, key, keys.MaxRevision)
	mustRead(err)
	if found {
		sm.valBuf = append(sm.valBuf[:0], kv.Value...)
		kv.Value = sm.valBuf
		kv.Key = key
	}
	if it.Valid() {
		sm.pruneVersions(b, it, key, rev)
	}
	mustRead(it.Close())
	return kv, found
}

// pruneVersions deletes the versions of key, from it (positioned at its
// newest) on, that no read at the horizon of a write at rev (rev minus the
// retention) or later can see: every version older than the newest one
// at or below the horizon. So a key's history holds its versions of the
// retention span and one before it, and a key written often keeps a
// bounded number of versions. It depends only on the stored versions, the
// write's revision and the Config, so every replica deletes the same.
func (sm *StateMachine) pruneVersions(b *pebble.Batch, it *pebble.Iterator, key []byte, rev uint64) {
	span := sm.cfg.retentionRevisions()
	if rev <= span {
		return
	}
	horizon := rev - span
	kept := false
	for valid := true; valid; valid = it.Next() {
		k, at, ok := keys.DecodeMVCCKey(it.Key())
		if !ok || !bytes.Equal(k, key) {
			break
		}
		switch {
		case at > horizon:
		case !kept:
			kept = true // what a read at the horizon sees
		default:
			mustWrite(b.Delete(it.Key(), nil))
		}
	}
	mustRead(it.Error())
}

// setUser writes the version of key at rev holding value.
func (sm *StateMachine) setUser(b *pebble.Batch, key, value []byte, rev uint64) {
	m := versionMeta{create: rev, version: 1}
	if cur, ok := sm.latest(b, key, rev); ok {
		m = versionMeta{create: cur.CreateRevision, version: cur.Version + 1}
	}
	sm.keyBuf = keys.AppendMVCCKey(sm.keyBuf[:0], key, rev)
	sm.recBuf = appendVersionValue(sm.recBuf[:0], m, value)
	mustWrite(b.Set(sm.keyBuf, sm.recBuf, nil))
}

// deleteUser writes a tombstone of key at rev, if key exists.
func (sm *StateMachine) deleteUser(b *pebble.Batch, key []byte, rev uint64) {
	if _, ok := sm.latest(b, key, rev); !ok {
		return
	}
	sm.keyBuf = keys.AppendMVCCKey(sm.keyBuf[:0], key, rev)
	mustWrite(b.Set(sm.keyBuf, tombstoneVersion, nil))
}

// applyCAS compares the key's current value, read through the batch so that
// earlier commands of the same batch are visible, and swaps on a match.
func (sm *StateMachine) applyCAS(b *pebble.Batch, c *Command) *Result {
	cur, found := sm.latest(b, c.Key, c.Revision)
	var res *Result
	switch {
	case c.ExpectAbsent && !found, !c.ExpectAbsent && found && bytes.Equal(cur.Value, c.Expected):
		sm.setUser(b, c.Key, c.Value, c.Revision)
		res = sm.writeResult(c.Revision)
	case found:
		res = &Result{Found: true, Value: append([]byte{}, cur.Value...), Revision: c.Revision}
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

	if mine != 0 && sm.createGroup(ac, right.ShardID, mine, right.Membership()) {
		// This node hosts the right-hand shard: give it its descriptor, the
		// revision of the last write (the right-hand shard's versions are
		// the left's, and its writes must come after them) and a copy of
		// the client table; the engine writes its Raft state.
		mustWrite(b.Set(keys.ShardKey(uint64(right.ShardID), keys.ShardDescriptor), right.AppendEncoded(nil), nil))
		if sm.lastRev != 0 { // no key means 0: one representation of each state
			mustWrite(b.Set(keys.ShardKey(uint64(right.ShardID), keys.ShardRevision), binary.BigEndian.AppendUint64(nil, sm.lastRev), nil))
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
	sm.desc.Store(&left)
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
	sm.desc.Store(&nd)
}
