package placement

import (
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/placement/schedule"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
	"github.com/flotilla-kv/flotilla/rpc/pbconv"
	"github.com/flotilla-kv/flotilla/shard"
)

// leaderBeat is node 1's heartbeat as the leader (replica 1) of d.
func leaderBeat(d shard.Descriptor) *pb.HeartbeatRequest {
	return &pb.HeartbeatRequest{NodeId: 1, Replicas: []*pb.ReplicaReport{{
		ShardId: uint64(d.ShardID), ReplicaId: 1, Leader: true, Shard: pbconv.DescriptorToProto(d)}}}
}

// replicas builds a descriptor of shard 1 at conf version confVer; a
// negative replica ID is a learner. Replica r lives on node r.
func replicas(confVer uint64, ids ...int) shard.Descriptor {
	d := shard.Descriptor{ShardID: 1, Epoch: shard.Epoch{Version: 1, ConfVer: confVer}}
	for _, id := range ids {
		r := multiraft.Replica{ReplicaID: multiraft.ReplicaID(id), NodeID: multiraft.NodeID(id)}
		if id < 0 {
			r = multiraft.Replica{ReplicaID: multiraft.ReplicaID(-id), NodeID: multiraft.NodeID(-id), Learner: true}
		}
		d.Replicas = append(d.Replicas, r)
	}
	return d
}

// TestConfirmWaitsForTheOperatorsEndState is the repair and balancing flap:
// an operator was counted done as soon as any newer conf version showed in
// a heartbeat, so a report taken between an add's learner and its
// promotion (or between a move's add and its remove) released the shard,
// and the next round removed the just-added replica as a stray learner (or
// as the extra voter).
func TestConfirmWaitsForTheOperatorsEndState(t *testing.T) {
	add := func(id int) schedule.AddReplica {
		return schedule.AddReplica{Shard: 1, Replica: multiraft.Replica{ReplicaID: multiraft.ReplicaID(id), NodeID: multiraft.NodeID(id)}}
	}
	remove := func(id int) schedule.RemoveReplica {
		return schedule.RemoveReplica{Shard: 1, Replica: multiraft.Replica{ReplicaID: multiraft.ReplicaID(id), NodeID: multiraft.NodeID(id)}}
	}
	now := time.Unix(1000, 0)
	for _, tc := range []struct {
		name  string
		steps []schedule.Step
		// reports in order, each with whether the operator is confirmed
		// after it.
		reports []shard.Descriptor
		want    []bool
	}{{
		name:    "add",
		steps:   []schedule.Step{add(4)},
		reports: []shard.Descriptor{replicas(2, 1, 2, -4), replicas(3, 1, 2, 4)},
		want:    []bool{false, true},
	}, {
		name:    "move",
		steps:   []schedule.Step{add(4), remove(3)},
		reports: []shard.Descriptor{replicas(2, 1, 2, 3, -4), replicas(3, 1, 2, 3, 4), replicas(4, 1, 2, 4)},
		want:    []bool{false, false, true},
	}, {
		name:    "remove",
		steps:   []schedule.Step{remove(3)},
		reports: []shard.Descriptor{replicas(2, 1, 2, 3), replicas(3, 1, 2)},
		want:    []bool{false, true},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			s := newService(Config{HeartbeatInterval: time.Second}, &Catalogue{}, nil)
			s.view.heartbeat(leaderBeat(replicas(1, 1, 2, 3)), now)
			f := &flight{op: schedule.Operator{Kind: schedule.KindRepair, Shard: 1,
				Epoch: shard.Epoch{Version: 1, ConfVer: 1}, Steps: tc.steps},
				done: true, settled: now.Add(5 * time.Second)}
			for i, d := range tc.reports {
				s.view.heartbeat(leaderBeat(d), now)
				s.view.mu.Lock()
				got := s.view.confirmedLocked(f, now)
				s.view.mu.Unlock()
				if got != tc.want[i] {
					t.Errorf("after a report of %s: confirmed %v, want %v", &d, got, tc.want[i])
				}
			}
			// Past its settling time an operator is released whatever the
			// view shows.
			s.view.mu.Lock()
			defer s.view.mu.Unlock()
			if !s.view.confirmedLocked(f, now.Add(6*time.Second)) {
				t.Error("not released after its settling time")
			}
		})
	}
}

// TestConfirmSplitWaitsForTheNewShard: a split is confirmed once the left
// side shows the new Version and the new shard is in the view.
func TestConfirmSplitWaitsForTheNewShard(t *testing.T) {
	now := time.Unix(1000, 0)
	s := newService(Config{HeartbeatInterval: time.Second}, &Catalogue{}, nil)
	left := replicas(1, 1, 2, 3)
	s.view.heartbeat(leaderBeat(left), now)
	f := &flight{op: schedule.Operator{Kind: schedule.KindSplit, Shard: 1, Epoch: left.Epoch,
		Steps: []schedule.Step{schedule.Split{Shard: 1, Key: []byte("m"), NewShard: 2}}},
		done: true, settled: now.Add(5 * time.Second)}
	confirmed := func() bool {
		s.view.mu.Lock()
		defer s.view.mu.Unlock()
		return s.view.confirmedLocked(f, now)
	}
	left.End, left.Epoch.Version = []byte("m"), 2
	s.view.heartbeat(leaderBeat(left), now)
	if confirmed() {
		t.Fatal("confirmed before the new shard was reported")
	}
	right := replicas(1, 1, 2, 3)
	right.ShardID, right.Start, right.Epoch.Version = 2, []byte("m"), 2
	s.view.heartbeat(leaderBeat(right), now)
	if !confirmed() {
		t.Fatal("not confirmed once both sides were reported")
	}
}
