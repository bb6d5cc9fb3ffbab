package schedule

import (
	"fmt"
	"strings"

	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/shard"
)

// Kind names the checker that produced an Operator. Kinds are numbered in
// the checkers' priority order.
type Kind uint8

const (
	// KindBootstrap creates one of the initial shards.
	KindBootstrap Kind = iota + 1
	// KindRepair replaces a dead replica, adds a missing one, or removes
	// an extra one or a stray learner.
	KindRepair
	// KindDrain moves a replica (and first its leadership) off a draining
	// node.
	KindDrain
	// KindZone moves a replica out of a zone that holds two of the shard's
	// replicas.
	KindZone
	// KindSplit splits a shard that is too large or too hot.
	KindSplit
	// KindReplicaBalance moves a replica from a full node to an empty one.
	KindReplicaBalance
	// KindLeaderBalance transfers a leadership from a node that leads too
	// many shards to one that leads too few.
	KindLeaderBalance
)

// String returns the kind's name as flotilla.v1.Operator.kind spells it.
func (k Kind) String() string {
	switch k {
	case KindBootstrap:
		return "create"
	case KindRepair:
		return "repair"
	case KindDrain:
		return "drain"
	case KindZone:
		return "zone"
	case KindSplit:
		return "split"
	case KindReplicaBalance:
		return "balance-replica"
	case KindLeaderBalance:
		return "balance-leader"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Operator is a change to one shard: steps the caller executes in order,
// through the shard leader's Admin service, each after the previous one is
// confirmed. See doc.go, "Executing operators".
type Operator struct {
	Kind  Kind
	Shard shard.ShardID
	// Epoch is the shard's epoch the operator was planned from (for
	// KindBootstrap, the new shard's). The caller refuses to start an
	// operator whose shard has moved past it.
	Epoch shard.Epoch
	// Steps are executed in order; never empty.
	Steps []Step
	// Reason says why, for logs and the status page.
	Reason string
}

// String formats op on one line, e.g.
//
//	repair s3: add r12@n4; remove r2@n2 (r2@n2: n2 down for 31s)
func (op *Operator) String() string {
	return op.StringAs(op.Kind.String())
}

// StringAs is String with kind in place of the operator's Kind: an
// operator asked for through the API is planned as a scheduled kind (a
// move as balance-replica) but named as what was asked (manual-move).
func (op *Operator) StringAs(kind string) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s s%d: ", kind, op.Shard)
	for i, st := range op.Steps {
		if i > 0 {
			sb.WriteString("; ")
		}
		sb.WriteString(st.String())
	}
	if op.Reason != "" {
		fmt.Fprintf(&sb, " (%s)", op.Reason)
	}
	return sb.String()
}

// Step is one action of an Operator: a CreateShard, AddReplica,
// RemoveReplica, TransferLeader or Split (the set is closed; switch on the
// type). Steps are values; the caller owns the ones it is given.
type Step interface {
	fmt.Stringer
	isStep()
}

// CreateShard bootstraps a new shard: the caller creates every replica of
// Descriptor on its node (shard.Store.CreateShard), all with this exact
// descriptor. Only bootstrap emits it.
type CreateShard struct {
	Descriptor shard.Descriptor
}

// AddReplica adds Replica (a new ReplicaID on Replica.NodeID) to Shard. The
// caller creates an empty joining replica on the node, adds it as a learner,
// waits for it to catch up (snapshot), then promotes it to a voter unless
// Replica.Learner asks it to stay a learner. The step is done when a
// heartbeat shows the replica in the shard's descriptor with that role.
type AddReplica struct {
	Shard   shard.ShardID
	Replica multiraft.Replica
}

// RemoveReplica removes Replica from Shard. The step is done when a
// heartbeat shows a descriptor without it. An operator that removes the
// leader's replica transfers the leadership in an earlier step.
type RemoveReplica struct {
	Shard   shard.ShardID
	Replica multiraft.Replica
}

// TransferLeader moves Shard's leadership to replica To, which lives on
// ToNode. The step is done when a heartbeat reports To as the leader; a
// transfer that does not happen (the target fell behind) fails the
// operator.
type TransferLeader struct {
	Shard  shard.ShardID
	To     multiraft.ReplicaID
	ToNode multiraft.NodeID
}

// Split splits Shard at Key (empty: the leader picks the middle of its
// data) into itself, [Start, Key), and NewShard, [Key, End), whose replica
// on each node is NewReplicas[i].New for the shard's replica
// NewReplicas[i].Old (one entry per replica, sorted by Old). It maps onto
// shard.Command{Kind: shard.KindSplit}. The step is done when a heartbeat
// shows the shard at a Version beyond Operator.Epoch.Version.
type Split struct {
	Shard       shard.ShardID
	Key         []byte
	NewShard    shard.ShardID
	NewReplicas []shard.SplitReplica
}

func (CreateShard) isStep()    {}
func (AddReplica) isStep()     {}
func (RemoveReplica) isStep()  {}
func (TransferLeader) isStep() {}
func (Split) isStep()          {}

// String formats the step for logs, as do the other steps' String methods.
func (s CreateShard) String() string { return "create " + s.Descriptor.String() }

func (s AddReplica) String() string {
	if s.Replica.Learner {
		return fmt.Sprintf("add learner r%d@n%d", s.Replica.ReplicaID, s.Replica.NodeID)
	}
	return fmt.Sprintf("add r%d@n%d", s.Replica.ReplicaID, s.Replica.NodeID)
}

func (s RemoveReplica) String() string {
	return fmt.Sprintf("remove r%d@n%d", s.Replica.ReplicaID, s.Replica.NodeID)
}

func (s TransferLeader) String() string {
	return fmt.Sprintf("transfer-leader r%d@n%d", s.To, s.ToNode)
}

func (s Split) String() string {
	var sb strings.Builder
	if len(s.Key) == 0 {
		sb.WriteString("split at middle")
	} else {
		fmt.Fprintf(&sb, "split at %q", s.Key)
	}
	fmt.Fprintf(&sb, " into s%d {", s.NewShard)
	for i, m := range s.NewReplicas {
		if i > 0 {
			sb.WriteByte(' ')
		}
		fmt.Fprintf(&sb, "r%d->r%d", m.Old, m.New)
	}
	sb.WriteByte('}')
	return sb.String()
}

// Visible reports whether a shard reported with descriptor d and leader
// shows every effect of op's steps, as each step's doc defines it: an added
// replica in d with the role asked for, a removed one absent, a split's
// Version reached, a lone leadership transfer's target leading. A newer
// epoch alone is not enough: a heartbeat taken between an AddReplica's
// learner and its promotion, or between a move's add and its remove, has
// one, and treating it as the operator's end state makes the next round
// undo half of the change. A CreateShard is visible once the shard has a
// leader. The caller owns d.
func (op *Operator) Visible(d *shard.Descriptor, leader multiraft.ReplicaID) bool {
	membership := false
	for _, st := range op.Steps {
		switch st := st.(type) {
		case CreateShard:
			if leader == 0 {
				return false
			}
		case AddReplica:
			membership = true
			r, ok := d.Replica(st.Replica.ReplicaID)
			if !ok || r.Learner != st.Replica.Learner {
				return false
			}
		case RemoveReplica:
			membership = true
			if _, ok := d.Replica(st.Replica.ReplicaID); ok {
				return false
			}
		case Split:
			membership = true
			if d.Epoch.Version <= op.Epoch.Version {
				return false
			}
		}
	}
	if membership {
		// A transfer that prepared a removal has served its purpose; the
		// leadership may have moved on since.
		return true
	}
	for _, st := range op.Steps {
		if t, ok := st.(TransferLeader); ok && leader != t.To {
			return false
		}
	}
	return true
}
