package placement

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/flotilla-kv/flotilla/multiraft"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// fakeEngine is an Engine that hosts the catalogue group and reports the
// leadership the test sets; it proposes nothing.
type fakeEngine struct {
	mu  sync.Mutex
	sum multiraft.GroupSummary
}

func (e *fakeEngine) set(leading bool, leader multiraft.NodeID) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.sum = multiraft.GroupSummary{Group: CatalogueGroup, Leading: leading, LeaderNode: leader}
}

func (e *fakeEngine) Groups() []multiraft.GroupID { return []multiraft.GroupID{CatalogueGroup} }
func (e *fakeEngine) CreateGroup(multiraft.GroupID, multiraft.ReplicaID, multiraft.Membership, func(*pebble.Batch) error) error {
	return multiraft.ErrGroupExists
}
func (e *fakeEngine) Summaries() []multiraft.GroupSummary {
	e.mu.Lock()
	defer e.mu.Unlock()
	return []multiraft.GroupSummary{e.sum}
}
func (e *fakeEngine) ReadFuture(multiraft.GroupID, multiraft.ReadMode) *multiraft.Future {
	panic("fakeEngine: no reads")
}

func (e *fakeEngine) LeaseHeld(multiraft.GroupID) bool { return false }

func (e *fakeEngine) ProposeFuture(multiraft.GroupID, []byte) *multiraft.Future {
	panic("fakeEngine: no proposals")
}

// leaderClient is the Placement client of the leader a follower forwards
// to: it records the GetRoute requests it gets.
type leaderClient struct {
	pb.PlacementClient // nil: only GetRoute is served
	addr               string
	got                []*pb.GetRouteRequest
}

func (c *leaderClient) GetRoute(_ context.Context, req *pb.GetRouteRequest, _ ...grpc.CallOption) (*pb.GetRouteResponse, error) {
	c.got = append(c.got, req)
	return &pb.GetRouteResponse{Route: &pb.Route{LeaderNodeId: 7}}, nil
}

// leaderConnector hands out the leader's client for its address only.
type leaderConnector struct{ leader *leaderClient }

func (c leaderConnector) Admin(multiraft.NodeID, string) (pb.AdminClient, error) {
	return nil, errors.New("no admin")
}
func (c leaderConnector) Placement(addr string) (pb.PlacementClient, error) {
	if addr != c.leader.addr {
		return nil, errors.New("unreachable " + addr)
	}
	return c.leader, nil
}

// TestForward: a follower hands each request to the leader as it is and
// returns the leader's answer; with no leader known it answers
// UNAVAILABLE; the leader serves the request itself. Each observes the
// leadership: leaderSince is set when the replica is first seen leading
// and cleared when it is seen following; leader alone changes nothing.
func TestForward(t *testing.T) {
	now := time.Unix(1000, 0)
	e := &fakeEngine{}
	lc := &leaderClient{addr: "b:1"}
	cat := &Catalogue{}
	cat.cur.Store(&catalogue{nodes: map[multiraft.NodeID]NodeRecord{}, counters: map[uint64]uint64{}})
	s, err := New(Config{ReplicaID: 1, Peers: map[multiraft.NodeID]string{1: "a:1", 2: "b:1"},
		Connect: leaderConnector{lc}, Now: func() time.Time { return now }}, cat, e)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	req := &pb.GetRouteRequest{Key: []byte("k"), Neighbours: 2}

	e.set(false, 2)
	resp, err := s.GetRoute(ctx, req)
	if err != nil || resp.GetRoute().GetLeaderNodeId() != 7 {
		t.Fatalf("follower: %v, %v; want the leader's answer", resp, err)
	}
	if len(lc.got) != 1 || !proto.Equal(lc.got[0], req) {
		t.Fatalf("the leader got %v, want %v once", lc.got, req)
	}

	e.set(false, 0)
	if _, err := s.GetRoute(ctx, req); status.Code(err) != codes.Unavailable {
		t.Fatalf("no leader known: %v, want UNAVAILABLE", err)
	}

	e.set(true, 1)
	if lead, _ := s.leader(); !lead || s.leaderSince.Load() != 0 {
		t.Fatalf("leader() = %v and set leaderSince %d; want true and nothing set", lead, s.leaderSince.Load())
	}
	// The leader serves it: its view is empty, so no shard owns the key.
	if _, err := s.GetRoute(ctx, req); status.Code(err) != codes.Unavailable || len(lc.got) != 1 {
		t.Fatalf("leader: %v (forwarded %d times); want its own UNAVAILABLE", err, len(lc.got))
	}
	if got := s.leaderSince.Load(); got != now.UnixNano() {
		t.Fatalf("leaderSince = %d after a request on the leader, want %d", got, now.UnixNano())
	}
	now = now.Add(time.Second)
	_, _ = s.GetRoute(ctx, req)
	if s.leaderSince.Load() != now.Add(-time.Second).UnixNano() {
		t.Fatal("leaderSince moved while the replica kept leading")
	}
	e.set(false, 2)
	if _, err := s.GetRoute(ctx, req); err != nil || s.leaderSince.Load() != 0 {
		t.Fatalf("after losing the lead: %v, leaderSince %d; want forwarded and 0", err, s.leaderSince.Load())
	}
}
