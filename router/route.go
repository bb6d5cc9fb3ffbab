package router

import (
	"bytes"
	"fmt"
	"strconv"

	"github.com/flotilla-kv/flotilla/internal/keyfmt"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// shardID and nodeID name shards and nodes inside the router; the wire
// carries both as uint64.
type (
	shardID uint64
	nodeID  uint64
)

// route is what the router knows of one shard: its descriptor and the
// leader it last heard of. A route is immutable once built; learning a new
// leader replaces it in the cache with a copy (withLeader), so a caller
// holding a route never sees it change.
type route struct {
	desc *pb.Descriptor // read-only
	// leaderReplica and leaderNode name the leader; zero when unknown.
	leaderReplica uint64
	leaderNode    nodeID
}

// newRoute builds a route from a descriptor and a leader hint, dropping a
// hint that names a node without a replica of the shard.
func newRoute(d *pb.Descriptor, leaderReplica uint64, leaderNode nodeID) *route {
	r := &route{desc: d}
	if leaderNode != 0 && r.hasNode(leaderNode) {
		r.leaderReplica, r.leaderNode = leaderReplica, leaderNode
	}
	return r
}

func (r *route) id() shardID     { return shardID(r.desc.GetShardId()) }
func (r *route) start() []byte   { return r.desc.GetStart() }
func (r *route) end() []byte     { return r.desc.GetEnd() }
func (r *route) version() uint64 { return r.desc.GetEpoch().GetVersion() }
func (r *route) confVer() uint64 { return r.desc.GetEpoch().GetConfVer() }

// contains reports whether key lies in [start, end).
func (r *route) contains(key []byte) bool {
	return bytes.Compare(key, r.start()) >= 0 && (len(r.end()) == 0 || bytes.Compare(key, r.end()) < 0)
}

// overlaps reports whether the ranges of r and o intersect.
func (r *route) overlaps(o *route) bool {
	return (len(o.end()) == 0 || bytes.Compare(r.start(), o.end()) < 0) &&
		(len(r.end()) == 0 || bytes.Compare(o.start(), r.end()) < 0)
}

// endsAtOrAfter reports whether the shard reaches at least to key (an empty
// key is +inf).
func (r *route) endsAtOrAfter(key []byte) bool {
	if len(r.end()) == 0 {
		return true
	}
	return len(key) != 0 && bytes.Compare(r.end(), key) >= 0
}

// replicaOn returns the ID of the shard's replica on node, 0 if none.
func (r *route) replicaOn(node nodeID) uint64 {
	for _, rep := range r.desc.GetReplicas() {
		if nodeID(rep.GetNodeId()) == node {
			return rep.GetReplicaId()
		}
	}
	return 0
}

// hasNode reports whether node hosts a replica of the shard.
func (r *route) hasNode(node nodeID) bool {
	for _, rep := range r.desc.GetReplicas() {
		if nodeID(rep.GetNodeId()) == node {
			return true
		}
	}
	return false
}

// supersedes reports whether r is newer than o, which it overlaps. Epoch
// versions grow along a shard's lineage (a split gives both sides the
// parent's version plus one), so between overlapping descriptors of
// different shards the higher version is the newer; within one shard the
// conf version breaks a tie.
func (r *route) supersedes(o *route) bool {
	if r.version() != o.version() {
		return r.version() > o.version()
	}
	if r.id() == o.id() {
		return r.confVer() > o.confVer()
	}
	return false
}

// withLeader returns a copy of r led by the given replica.
func (r *route) withLeader(replica uint64, node nodeID) *route {
	c := *r
	c.leaderReplica, c.leaderNode = replica, node
	return &c
}

// String renders the route as in the cache's testdata:
// "s1 [a, m) v1.1 leader=n2 replicas=n1,n2,n3".
func (r *route) String() string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "s%d [%s, %s) v%d.%d", r.id(), printKey(r.start()), printEnd(r.end()), r.confVer(), r.version())
	if r.leaderNode != 0 {
		fmt.Fprintf(&b, " leader=n%d", r.leaderNode)
	}
	for i, rep := range r.desc.GetReplicas() {
		sep := ","
		if i == 0 {
			sep = " replicas="
		}
		fmt.Fprintf(&b, "%sn%d", sep, rep.GetNodeId())
		if rep.GetLearner() {
			b.WriteString("(learner)")
		}
	}
	return b.String()
}

func printKey(k []byte) string {
	if len(k) == 0 {
		return "-inf"
	}
	q := strconv.Quote(string(k))
	return q[1 : len(q)-1]
}

func printEnd(k []byte) string {
	if len(k) == 0 {
		return "+inf"
	}
	return printKey(k)
}

// validateRoute checks a route from a RouteSource: a descriptor with a
// shard ID, at least one replica, and a non-empty range that contains key
// (nil key: not checked).
func validateRoute(rt *pb.Route, key []byte) error {
	d := rt.GetShard()
	switch {
	case d == nil:
		return fmt.Errorf("%w: route without a descriptor", ErrNoRoute)
	case d.GetShardId() == 0:
		return fmt.Errorf("%w: route without a shard ID", ErrNoRoute)
	case len(d.GetReplicas()) == 0:
		return fmt.Errorf("%w: shard %d has no replicas", ErrNoRoute, d.GetShardId())
	case len(d.GetEnd()) != 0 && bytes.Compare(d.GetStart(), d.GetEnd()) >= 0:
		return fmt.Errorf("%w: shard %d has an empty range", ErrNoRoute, d.GetShardId())
	}
	if key != nil && !newRoute(d, 0, 0).contains(key) {
		return fmt.Errorf("%w: shard %d [%s, %s) does not contain key %s", ErrNoRoute, d.GetShardId(),
			keyfmt.Quote(d.GetStart()), keyfmt.Quote(d.GetEnd()), keyfmt.Quote(key))
	}
	return nil
}
