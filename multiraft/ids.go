package multiraft

import (
	"fmt"

	"go.etcd.io/raft/v3"
)

// GroupID names a Raft group. In Flotilla the group ID of a shard's Raft
// group is the shard's ID. IDs are never reused.
type GroupID uint64

// ReplicaID names one member of a group; it is the Raft peer ID. Unique
// across the whole cluster and never reused, so a removed replica can never
// be mistaken for a new one.
type ReplicaID uint64

// MaxReplicaID is the largest replica ID a replica may have. etcd/raft
// reserves the two IDs above it for its local storage threads
// (raft.LocalAppendThread and raft.LocalApplyThread): a replica created
// with one panics its node, and a member with one misroutes messages. The
// Admin service refuses them and placement never allocates them. Group IDs
// have no such limit: every uint64 but 0 is one.
const MaxReplicaID = ReplicaID(raft.LocalApplyThread - 1)

// NodeID names a process hosting an Engine (a shardnode).
type NodeID uint64

// Replica places one member of a group on a node.
type Replica struct {
	ReplicaID ReplicaID
	NodeID    NodeID
	// Learner replicas receive the log but do not vote.
	Learner bool
}

func (r Replica) String() string {
	if r.Learner {
		return fmt.Sprintf("r%d@n%d(learner)", r.ReplicaID, r.NodeID)
	}
	return fmt.Sprintf("r%d@n%d", r.ReplicaID, r.NodeID)
}

// Membership is the set of replicas of a group as of an applied index. The
// engine keeps it beside the Raft ConfState so it knows which node hosts each
// peer; the state machine receives it whenever it changes.
type Membership struct {
	// Replicas, sorted by ReplicaID. During a joint configuration it holds
	// the union of the incoming and outgoing voters and the learners.
	Replicas []Replica
	// Joint is true while the group is in a joint configuration.
	Joint bool
}

// Lookup returns the replica with the given ID.
func (m Membership) Lookup(id ReplicaID) (Replica, bool) {
	for _, r := range m.Replicas {
		if r.ReplicaID == id {
			return r, true
		}
	}
	return Replica{}, false
}

// Clone returns a deep copy of m.
func (m Membership) Clone() Membership {
	return Membership{Replicas: append([]Replica(nil), m.Replicas...), Joint: m.Joint}
}
