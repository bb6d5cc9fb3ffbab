package placement

import (
	"bytes"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/multiraft"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
	"github.com/flotilla-kv/flotilla/rpc/pbconv"
	"github.com/flotilla-kv/flotilla/shard"
)

func desc(id uint64, start, end string, version, confVer uint64) shard.Descriptor {
	return shard.Descriptor{ShardID: shard.ShardID(id), Start: []byte(start), End: []byte(end),
		Epoch:    shard.Epoch{Version: version, ConfVer: confVer},
		Replicas: []multiraft.Replica{{ReplicaID: multiraft.ReplicaID(id * 10), NodeID: 1}}}
}

func beat(node uint64, descs ...shard.Descriptor) *pb.HeartbeatRequest {
	req := &pb.HeartbeatRequest{NodeId: node}
	for _, d := range descs {
		req.Replicas = append(req.Replicas, &pb.ReplicaReport{ShardId: uint64(d.ShardID), ReplicaId: uint64(d.ShardID) * 10, Leader: true, Shard: pbconv.DescriptorToProto(d)})
	}
	return req
}

func TestViewNewerEpochWinsAndRoutes(t *testing.T) {
	v := newView()
	now := time.Unix(100, 0)
	v.heartbeat(beat(1, desc(1, "", "m", 1, 1), desc(2, "m", "", 1, 1)), now)
	// Shard 1 splits at "g" into 1 and 3; node 2 reports the new side first,
	// then a stale leader of shard 1 reports the old range.
	v.heartbeat(beat(2, desc(3, "g", "m", 2, 1)), now)
	v.heartbeat(beat(3, desc(1, "", "m", 1, 1)), now)
	v.mu.Lock()
	sorted := v.sortedLocked()
	v.mu.Unlock()
	if i := routeIndex(sorted, []byte("h")); i < 0 || sorted[i].desc.ShardID != 3 {
		t.Fatalf("key h routed to %d, want the newer shard 3", i)
	}
	// The left side's new epoch arrives: it wins over the old range.
	v.heartbeat(beat(1, desc(1, "", "g", 2, 1)), now)
	v.mu.Lock()
	sorted = v.sortedLocked()
	v.mu.Unlock()
	var got []uint64
	for _, s := range sorted {
		got = append(got, uint64(s.desc.ShardID))
	}
	if len(got) != 3 || got[0] != 1 || got[1] != 3 || got[2] != 2 {
		t.Fatalf("shards in key order: %v, want [1 3 2]", got)
	}
	for key, want := range map[string]shard.ShardID{"": 1, "a": 1, "g": 3, "l": 3, "m": 2, "zzz": 2} {
		i := routeIndex(sorted, []byte(key))
		if i < 0 || sorted[i].desc.ShardID != want {
			t.Errorf("key %q routed to index %d, want shard %d", key, i, want)
		}
	}
	// A stale report of shard 1 (older epoch) changes nothing.
	v.heartbeat(beat(3, desc(1, "", "m", 1, 1)), now)
	if d := v.mu.shards[1].desc; !bytes.Equal(d.End, []byte("g")) {
		t.Fatalf("stale report replaced shard 1: %s", &d)
	}
}

func TestRouteIndexGaps(t *testing.T) {
	v := newView()
	v.heartbeat(beat(1, desc(1, "b", "d", 1, 1)), time.Unix(1, 0))
	v.mu.Lock()
	sorted := v.sortedLocked()
	v.mu.Unlock()
	for key, want := range map[string]int{"a": -1, "b": 0, "c": 0, "d": -1} {
		if got := routeIndex(sorted, []byte(key)); got != want {
			t.Errorf("routeIndex(%q) = %d, want %d", key, got, want)
		}
	}
}
