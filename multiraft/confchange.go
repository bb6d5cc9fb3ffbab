package multiraft

import (
	"fmt"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// applyConfChange applies a committed membership change: raft's config,
// the applied membership and the state machine follow, and the proposer's
// future resolves with the round's results.
func (r *round) applyConfChange(g *group, ent *raftpb.Entry) {
	var cc raftpb.ConfChangeI
	if ent.GetType() == raftpb.EntryConfChange {
		var c raftpb.ConfChange
		if err := proto.Unmarshal(ent.GetData(), &c); err != nil {
			panic(fmt.Sprintf("multiraft: group %d: decoding conf change %d: %v", g.id, ent.GetIndex(), err))
		}
		cc = &c
	} else {
		var c raftpb.ConfChangeV2
		if err := proto.Unmarshal(ent.GetData(), &c); err != nil {
			panic(fmt.Sprintf("multiraft: group %d: decoding conf change %d: %v", g.id, ent.GetIndex(), err))
		}
		cc = &c
	}
	v2 := cc.AsV2()
	nodes := make(map[ReplicaID]NodeID, len(g.st.applied.members.Replicas)+len(v2.GetChanges()))
	for _, rep := range g.st.applied.members.Replicas {
		nodes[rep.ReplicaID] = rep.NodeID
	}
	origin, id, rest, hasEnvelope := readEnvelope(v2.GetContext())
	if hasEnvelope {
		added, _, err := decodeMembership(rest)
		if err != nil {
			panic(fmt.Sprintf("multiraft: group %d: conf change %d context: %v", g.id, ent.GetIndex(), err))
		}
		for _, rep := range added.Replicas {
			nodes[rep.ReplicaID] = rep.NodeID
		}
	}
	cs := g.rn.ApplyConfChange(cc)
	g.st.applied.confState = cs
	g.st.applied.members = membershipFromConfState(cs, nodes)
	g.sm.ApplyMembership(&r.ac, ent.GetIndex(), g.st.applied.members)
	if hasEnvelope && origin == r.e.origin && g.confFuture != nil && g.confID == id {
		r.results = append(r.results, applied{fut: g.confFuture})
		g.confFuture = nil
	}
	if _, ok := g.st.applied.members.Lookup(g.replica); !ok {
		g.destroy = true
	}
	r.e.metrics.ConfChanges.Add(1)
	r.announce = true
}
