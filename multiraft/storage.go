package multiraft

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/flotilla-kv/flotilla/internal/keys"
)

// storage is one group's Raft log and state, kept in the shared Pebble
// instance and mirrored in memory. It implements raft.Storage for the
// group's RawNode.
//
// Only the worker that owns the group touches a storage, so it has no lock.
// Its in-memory view changes only after the batch carrying the change has
// been committed, so raft never sees state that is not yet in Pebble.
type storage struct {
	db    *pebble.DB
	group GroupID

	hardState raftpb.HardState
	// truncIndex and truncTerm name the last entry removed from the log
	// (or the initial index of a group created at a non-zero index).
	truncIndex, truncTerm uint64
	lastIndex, lastTerm   uint64
	applied               appliedState
	// durableApplied is an applied index known to be synced: the log is
	// never truncated past it.
	durableApplied uint64
	// logBytes approximates the encoded size of the log above truncIndex.
	logBytes int64

	cache entryCache
	// keyBuf is reused for log keys.
	keyBuf []byte
}

// appliedState is what the engine persists with every applied batch.
type appliedState struct {
	index, term uint64
	confState   *raftpb.ConfState
	members     Membership
}

// initialIndex and initialTerm are where every new group's log starts. All
// replicas of a group created together (or by a split) begin with the same
// state at this index, so none needs a snapshot to join the others.
const (
	initialIndex = 10
	initialTerm  = 5
)

var _ raft.Storage = (*storage)(nil)

// InitialState implements raft.Storage.
func (s *storage) InitialState() (*raftpb.HardState, *raftpb.ConfState, error) {
	return proto.CloneOf(&s.hardState), proto.CloneOf(s.applied.confState), nil
}

// Entries implements raft.Storage.
func (s *storage) Entries(lo, hi, maxSize uint64) ([]*raftpb.Entry, error) {
	if lo <= s.truncIndex {
		return nil, raft.ErrCompacted
	}
	if hi > s.lastIndex+1 {
		panic(fmt.Sprintf("multiraft: group %d: entries [%d,%d) beyond last index %d", s.group, lo, hi, s.lastIndex))
	}
	if ents, ok := s.cache.get(lo, hi, maxSize); ok {
		return ents, nil
	}
	ents, err := s.loadEntries(lo, hi, maxSize)
	if err != nil && !errors.Is(err, raft.ErrUnavailable) {
		// Raft panics on any other error: make it a disk failure, which
		// the round recovers and fail-stops on (see round.run).
		err = fmt.Errorf("%w: group %d: reading log entries [%d,%d): %w", ErrDiskFailure, s.group, lo, hi, err)
	}
	return ents, err
}

// loadEntries reads entries [lo, hi) from Pebble, stopping at maxSize bytes
// (but returning at least one entry).
func (s *storage) loadEntries(lo, hi, maxSize uint64) ([]*raftpb.Entry, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: keys.RaftLogKey(uint64(s.group), lo),
		UpperBound: keys.RaftLogKey(uint64(s.group), hi),
	})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var ents []*raftpb.Entry
	var size uint64
	next := lo
	for it.First(); it.Valid(); it.Next() {
		if idx := keys.RaftLogIndex(it.Key()); idx != next {
			return nil, fmt.Errorf("multiraft: group %d: log has a gap: found %d, want %d", s.group, idx, next)
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, err
		}
		e := &raftpb.Entry{}
		if err := proto.Unmarshal(v, e); err != nil {
			return nil, fmt.Errorf("multiraft: group %d: decoding entry %d: %w", s.group, next, err)
		}
		size += uint64(proto.Size(e))
		if len(ents) > 0 && size > maxSize {
			break
		}
		ents = append(ents, e)
		next++
	}
	if err := it.Error(); err != nil {
		return nil, err
	}
	if len(ents) == 0 {
		return nil, raft.ErrUnavailable
	}
	if uint64(len(ents)) < hi-lo && size <= maxSize {
		return nil, fmt.Errorf("multiraft: group %d: log ends at %d, want up to %d", s.group, next-1, hi-1)
	}
	return ents, nil
}

// Term implements raft.Storage.
func (s *storage) Term(i uint64) (uint64, error) {
	switch {
	case i == s.truncIndex:
		return s.truncTerm, nil
	case i < s.truncIndex:
		return 0, raft.ErrCompacted
	case i > s.lastIndex:
		return 0, raft.ErrUnavailable
	case i == s.lastIndex:
		return s.lastTerm, nil
	}
	if t, ok := s.cache.term(i); ok {
		return t, nil
	}
	ents, err := s.loadEntries(i, i+1, 0)
	if err != nil {
		return 0, err
	}
	return ents[0].GetTerm(), nil
}

// LastIndex implements raft.Storage.
func (s *storage) LastIndex() (uint64, error) { return s.lastIndex, nil }

// FirstIndex implements raft.Storage.
func (s *storage) FirstIndex() (uint64, error) { return s.truncIndex + 1, nil }

// Snapshot implements raft.Storage. It describes the state machine as of the
// applied index; the data itself is streamed separately when the MsgSnap
// leaves (see sendSnapshot), from a Pebble snapshot taken in the same round,
// before anything more is applied.
func (s *storage) Snapshot() (*raftpb.Snapshot, error) {
	if s.applied.index == 0 {
		return nil, raft.ErrSnapshotTemporarilyUnavailable
	}
	return &raftpb.Snapshot{
		Data: encodeMembership(nil, s.applied.members),
		Metadata: &raftpb.SnapshotMetadata{
			Index:     proto.Uint64(s.applied.index),
			Term:      proto.Uint64(s.applied.term),
			ConfState: proto.CloneOf(s.applied.confState),
		},
	}, nil
}

// appendEntries writes ents (a contiguous run, possibly overwriting the
// tail of the log) into b. The in-memory view is updated by
// entriesAppended once b is committed.
func (s *storage) appendEntries(b *pebble.Batch, ents []*raftpb.Entry, buf []byte) []byte {
	first := ents[0].GetIndex()
	if first <= s.truncIndex {
		panic(fmt.Sprintf("multiraft: group %d: appending at %d below truncated index %d", s.group, first, s.truncIndex))
	}
	for _, e := range ents {
		s.keyBuf = keys.AppendRaftLogKey(s.keyBuf[:0], uint64(s.group), e.GetIndex())
		var err error
		buf, err = proto.MarshalOptions{}.MarshalAppend(buf[:0], e)
		if err != nil {
			panic(fmt.Sprintf("multiraft: group %d: encoding entry: %v", s.group, err))
		}
		_ = b.Set(s.keyBuf, buf, nil)
	}
	if last := ents[len(ents)-1].GetIndex(); last < s.lastIndex {
		// The new entries replace a longer tail: delete what lies beyond.
		_ = b.DeleteRange(keys.RaftLogKey(uint64(s.group), last+1), keys.RaftLogKey(uint64(s.group), s.lastIndex+1), nil)
	}
	return buf
}

// entriesAppended updates the in-memory view after appendEntries' batch
// committed.
func (s *storage) entriesAppended(ents []*raftpb.Entry) {
	first, last := ents[0].GetIndex(), ents[len(ents)-1]
	if first <= s.lastIndex {
		// Approximate: forget the size of the overwritten tail.
		s.logBytes -= int64(s.lastIndex-first+1) * s.meanEntryBytes()
	}
	for _, e := range ents {
		s.logBytes += int64(len(e.GetData())) + entryOverheadBytes
	}
	s.lastIndex, s.lastTerm = last.GetIndex(), last.GetTerm()
	s.cache.append(ents)
}

// entryOverheadBytes approximates the encoding overhead of one entry.
const entryOverheadBytes = 16

func (s *storage) meanEntryBytes() int64 {
	n := int64(s.lastIndex - s.truncIndex)
	if n <= 0 {
		return 0
	}
	return s.logBytes / n
}

// setHardState writes hs into b.
func (s *storage) setHardState(b *pebble.Batch, hs *raftpb.HardState, buf []byte) []byte {
	buf, err := proto.MarshalOptions{}.MarshalAppend(buf[:0], hs)
	if err != nil {
		panic(err)
	}
	_ = b.Set(keys.RaftKey(uint64(s.group), keys.RaftHardState), buf, nil)
	return buf
}

// writeAppliedState writes the applied state a into b.
func writeAppliedState(b *pebble.Batch, group GroupID, a *appliedState) {
	_ = b.Set(keys.RaftKey(uint64(group), keys.RaftAppliedState), encodeAppliedState(a), nil)
}

// truncate writes into b the removal of log entries up to and including
// index. truncated applies the change in memory once b committed.
func (s *storage) truncate(b *pebble.Batch, index, term uint64) {
	_ = b.DeleteRange(keys.RaftLogKey(uint64(s.group), s.truncIndex+1), keys.RaftLogKey(uint64(s.group), index+1), nil)
	_ = b.Set(keys.RaftKey(uint64(s.group), keys.RaftTruncated), encodeTruncated(index, term), nil)
}

func (s *storage) truncated(index, term uint64) {
	if index <= s.truncIndex {
		return
	}
	s.logBytes -= int64(index-s.truncIndex) * s.meanEntryBytes()
	if s.logBytes < 0 || index >= s.lastIndex {
		s.logBytes = 0
	}
	s.truncIndex, s.truncTerm = index, term
	if index > s.lastIndex {
		s.lastIndex, s.lastTerm = index, term
	}
	s.cache.truncateFront(index + 1)
}

// writeSnapshotState writes into b the Raft state of a group that adopts
// snapshot meta: the whole log goes, the truncated state and the applied
// state move to the snapshot's index.
func (s *storage) writeSnapshotState(b *pebble.Batch, meta *raftpb.SnapshotMetadata, members Membership) {
	_ = b.DeleteRange(keys.RaftLogKey(uint64(s.group), 0), keys.RaftLogKey(uint64(s.group), s.lastIndex+1), nil)
	_ = b.Set(keys.RaftKey(uint64(s.group), keys.RaftTruncated), encodeTruncated(meta.GetIndex(), meta.GetTerm()), nil)
	a := appliedState{index: meta.GetIndex(), term: meta.GetTerm(), confState: meta.GetConfState(), members: members}
	writeAppliedState(b, s.group, &a)
}

// snapshotApplied updates the in-memory view after writeSnapshotState's
// batch committed.
func (s *storage) snapshotApplied(meta *raftpb.SnapshotMetadata, members Membership) {
	s.truncIndex, s.truncTerm = meta.GetIndex(), meta.GetTerm()
	s.lastIndex, s.lastTerm = s.truncIndex, s.truncTerm
	s.logBytes = 0
	s.applied = appliedState{index: s.truncIndex, term: s.truncTerm, confState: proto.CloneOf(meta.GetConfState()), members: members}
	s.cache.clear()
}

// loadStorage reads a group's Raft state from db.
func loadStorage(db *pebble.DB, group GroupID, cacheBytes int64) (*storage, error) {
	s := &storage{db: db, group: group, cache: entryCache{maxBytes: cacheBytes}}
	s.applied.confState = &raftpb.ConfState{}
	g := uint64(group)
	if err := getProto(db, keys.RaftKey(g, keys.RaftHardState), &s.hardState); err != nil {
		return nil, err
	}
	v, closer, err := db.Get(keys.RaftKey(g, keys.RaftTruncated))
	switch {
	case err == nil:
		s.truncIndex, s.truncTerm, err = decodeTruncated(v)
		closer.Close()
		if err != nil {
			return nil, fmt.Errorf("multiraft: group %d: %w", group, err)
		}
	case err != pebble.ErrNotFound:
		return nil, err
	}
	v, closer, err = db.Get(keys.RaftKey(g, keys.RaftAppliedState))
	switch {
	case err == nil:
		err = decodeAppliedState(v, &s.applied)
		closer.Close()
		if err != nil {
			return nil, fmt.Errorf("multiraft: group %d: %w", group, err)
		}
	case err != pebble.ErrNotFound:
		return nil, err
	}
	// A replica created empty by a message and then initialised by a split
	// (see layout.go) keeps the hard state it had, so that it never forgets
	// a vote; its commit index (and maybe its term) lies below the state
	// the split gave it. Every applied entry is committed, and a term may
	// always grow (without a vote), so raise them. Nothing else can leave
	// a commit index below the applied one: the hard state is synced
	// before the entries it commits are applied.
	if s.hardState.GetCommit() < s.applied.index {
		s.hardState.Commit = proto.Uint64(s.applied.index)
	}
	if s.hardState.GetTerm() < s.truncTerm {
		s.hardState.Term, s.hardState.Vote = proto.Uint64(s.truncTerm), proto.Uint64(0)
	}
	s.durableApplied = s.applied.index
	s.lastIndex, s.lastTerm = s.truncIndex, s.truncTerm
	// The last log entry, if any lies above the truncated index.
	it, err := db.NewIter(&pebble.IterOptions{
		LowerBound: keys.RaftLogKey(g, s.truncIndex+1),
		UpperBound: keys.RaftLogKey(g, ^uint64(0)),
	})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var n int64
	for valid := it.Last(); valid; valid = false {
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, err
		}
		var e raftpb.Entry
		if err := proto.Unmarshal(v, &e); err != nil {
			return nil, fmt.Errorf("multiraft: group %d: decoding last entry: %w", group, err)
		}
		s.lastIndex, s.lastTerm = e.GetIndex(), e.GetTerm()
		n = int64(len(v))
	}
	// Estimate the log's size from its last entry rather than read it all.
	s.logBytes = n * int64(s.lastIndex-s.truncIndex)
	return s, it.Error()
}

func getProto(db *pebble.DB, key []byte, m proto.Message) error {
	v, closer, err := db.Get(key)
	if err == pebble.ErrNotFound {
		return nil
	}
	if err != nil {
		return err
	}
	defer closer.Close()
	return proto.Unmarshal(v, m)
}
