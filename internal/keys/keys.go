package keys

import (
	"encoding/binary"
	"fmt"
)

const (
	localPrefix   = 0x01
	userPrefix    = 0x02
	userPrefixEnd = 0x03

	raftInfix      = 'r'
	shardInfix     = 's'
	placementInfix = 'p'
)

// Suffixes of raft-local keys (owned by multiraft).
const (
	RaftHardState    byte = 'h' // raftpb.HardState
	RaftLog          byte = 'l' // followed by the 8-byte index: one raftpb.Entry
	RaftTruncated    byte = 't' // index and term of the last truncated entry
	RaftAppliedState byte = 'a' // applied index, term, ConfState and members
	RaftReplicaID    byte = 'i' // this node's replica ID in the group
	RaftTombstone    byte = 'x' // the highest replica ID of the group removed from this node
)

// PlacementKey returns the key of a record of placement's catalogue (only
// in placementd's own Pebble): a kind byte and an ID.
func PlacementKey(kind byte, id uint64) []byte {
	k := []byte{localPrefix, placementInfix, kind}
	return binary.BigEndian.AppendUint64(k, id)
}

// PlacementSpan returns the bounds [start, end) of the whole catalogue.
func PlacementSpan() (start, end []byte) {
	return []byte{localPrefix, placementInfix}, []byte{localPrefix, placementInfix + 1}
}

// EngineIncarnation is the key of the engine's incarnation counter, bumped
// (and synced) every time the engine opens, so IDs it hands out never repeat
// across restarts.
var EngineIncarnation = []byte{localPrefix, 'e', 'i'}

// NodeOracleLimit is the key of the persisted window of a shardnode's own
// timestamp oracle, which a node run without placement stamps its writes
// with (8 bytes, big-endian).
var NodeOracleLimit = []byte{localPrefix, 'o', 'l'}

// RaftGroupsSpan returns the bounds [start, end) that hold the
// raft-local keys of every group; scanning them for RaftReplicaID keys finds
// every group on the node.
func RaftGroupsSpan() (start, end []byte) {
	return []byte{localPrefix, raftInfix}, []byte{localPrefix, raftInfix + 1}
}

// RaftKeyGroup returns the group of a raft-local key and the key's suffix.
func RaftKeyGroup(k []byte) (group uint64, suffix byte, ok bool) {
	if len(k) < 11 || k[0] != localPrefix || k[1] != raftInfix {
		return 0, 0, false
	}
	return binary.BigEndian.Uint64(k[2:10]), k[10], true
}

// Suffixes of shard-local keys (owned by shard).
const (
	ShardDescriptor byte = 'd' // the shard's Descriptor
	ShardClient     byte = 'c' // followed by the 8-byte client ID: the client's last results
	ShardChecksum   byte = 'k' // the last consistency checksum: index and SHA-256
	ShardRevision   byte = 'v' // the revision of the last write applied (8 bytes, big-endian)
	ShardCompacted  byte = 'o' // the revision the shard was compacted to (8 bytes, big-endian)
	ShardLock       byte = 'l' // followed by a user key: the lock a transaction holds on it
	ShardTxn        byte = 't' // followed by a primary key and a start revision: a transaction's outcome
)

func localKey(infix byte, id uint64, suffix byte, extra int) []byte {
	k := make([]byte, 11, 11+extra)
	k[0] = localPrefix
	k[1] = infix
	binary.BigEndian.PutUint64(k[2:], id)
	k[10] = suffix
	return k
}

// RaftKey returns the raft-local key of group with the given suffix.
func RaftKey(group uint64, suffix byte) []byte { return localKey(raftInfix, group, suffix, 0) }

// RaftLogKey returns the key of the log entry of group at index.
func RaftLogKey(group, index uint64) []byte {
	return AppendRaftLogKey(make([]byte, 0, 19), group, index)
}

// AppendRaftLogKey appends the key of the log entry of group at index to dst
// and returns the extended slice; it allocates only when dst is too small.
func AppendRaftLogKey(dst []byte, group, index uint64) []byte {
	dst = append(dst, localPrefix, raftInfix)
	dst = binary.BigEndian.AppendUint64(dst, group)
	dst = append(dst, RaftLog)
	return binary.BigEndian.AppendUint64(dst, index)
}

// RaftLogIndex decodes the index from a key made by RaftLogKey.
func RaftLogIndex(key []byte) uint64 { return binary.BigEndian.Uint64(key[11:]) }

// RaftPrefix returns the bounds [start, end) of every raft-local key of
// group. Every group ID has one, the largest included: its end is the first
// key of the next section of the key space, not the prefix of group+1.
func RaftPrefix(group uint64) (start, end []byte) {
	start = localKey(raftInfix, group, 0, 0)[:10]
	return start, prefixEnd(start)
}

// prefixEnd returns the smallest key greater than every key that starts
// with prefix: prefix with its last byte below 0xff incremented and the
// 0xff bytes after it dropped. Computed on bytes, it never wraps around
// the way an ID+1 does. prefix must contain a byte below 0xff; every
// prefix here starts with localPrefix.
func prefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] != 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	panic(fmt.Sprintf("keys: prefix %x has no successor", prefix))
}

// ShardKey returns the shard-local key of shard with the given suffix.
func ShardKey(shard uint64, suffix byte) []byte { return localKey(shardInfix, shard, suffix, 0) }

// ShardClientKey returns the key of a client's record in shard's client table.
func ShardClientKey(shard, client uint64) []byte {
	k := localKey(shardInfix, shard, ShardClient, 8)
	return binary.BigEndian.AppendUint64(k, client)
}

// ShardClientPrefix returns the bounds [start, end) of shard's client table.
func ShardClientPrefix(shard uint64) (start, end []byte) {
	start = localKey(shardInfix, shard, ShardClient, 0)
	return start, prefixEnd(start)
}

// ShardSpan returns the bounds [start, end) of the shard-local keys of
// shard with the given suffix (its locks, say).
func ShardSpan(shard uint64, suffix byte) (start, end []byte) {
	start = localKey(shardInfix, shard, suffix, 0)
	return start, prefixEnd(start)
}

// ShardPrefix returns the bounds [start, end) of every shard-local key of
// shard, the largest shard ID included (see RaftPrefix).
func ShardPrefix(shard uint64) (start, end []byte) {
	start = localKey(shardInfix, shard, 0, 0)[:10]
	return start, prefixEnd(start)
}
