package placement

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/multiraft"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// Service is the placement service of one placementd: the gRPC Placement
// API, the catalogue state machine, the leader's view and its scheduler.
// Every request reaching a follower is forwarded to the leader.
type Service struct {
	pb.UnimplementedPlacementServer
	cfg    Config
	engine *multiraft.Engine
	cat    atomic.Pointer[catalogue]
	view   *view
	// leaderSince is when this replica last became leader (unix nanos), 0
	// while it follows.
	leaderSince atomic.Int64
	ops         *opHistory
}

// NewService returns a service; its StateMachineFunc must be handed to the
// engine before Start.
func NewService(cfg Config) *Service {
	cfg = cfg.withDefaults()
	return &Service{cfg: cfg, view: newView(), ops: newOpHistory(64)}
}

// StateMachineFunc builds the catalogue state machine for the engine.
func (s *Service) StateMachineFunc() multiraft.NewStateMachineFunc {
	return func(g multiraft.GroupID, _ multiraft.ReplicaID, r pebble.Reader) (multiraft.StateMachine, error) {
		if g != CatalogueGroup {
			return nil, fmt.Errorf("placement: unexpected group %d", g)
		}
		c, err := newCatalogue(r)
		if err != nil {
			return nil, err
		}
		s.cat.Store(c)
		return c, nil
	}
}

// SetEngine wires the engine hosting the catalogue group.
func (s *Service) SetEngine(e *multiraft.Engine) { s.engine = e }

// Bootstrap creates this replica of the catalogue group if the engine did
// not recover it: every placement replica is created with the same
// membership (all of Config.Peers).
func (s *Service) Bootstrap() error {
	for _, g := range s.engine.Groups() {
		if g == CatalogueGroup {
			return nil
		}
	}
	var m multiraft.Membership
	for id := range s.cfg.Peers {
		m.Replicas = append(m.Replicas, multiraft.Replica{ReplicaID: multiraft.ReplicaID(id), NodeID: id})
	}
	sortReplicas(m.Replicas)
	return s.engine.CreateGroup(CatalogueGroup, multiraft.ReplicaID(s.cfg.ReplicaID), m, nil)
}

// leader returns whether this replica leads the catalogue, and the leader's
// address otherwise ("" if unknown).
func (s *Service) leader() (bool, string) {
	for _, g := range s.engine.Summaries() {
		if g.Group == CatalogueGroup {
			if g.Leading {
				if s.leaderSince.Load() == 0 {
					s.leaderSince.Store(s.cfg.Now().UnixNano())
				}
				return true, ""
			}
			s.leaderSince.Store(0)
			return false, s.cfg.Peers[g.LeaderNode]
		}
	}
	return false, ""
}

// propose runs a catalogue command through Raft on the leader.
func (s *Service) propose(ctx context.Context, cmd command) (any, error) {
	b, err := json.Marshal(cmd)
	if err != nil {
		return nil, err
	}
	res, err := s.cfg.Runtime.Wait(ctx, s.engine.ProposeFuture(CatalogueGroup, b))
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "placement: catalogue: %v", err)
	}
	if err, ok := res.(error); ok {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return res, nil
}

// AllocateIDs reserves n IDs of a counter and returns the first.
func (s *Service) AllocateIDs(ctx context.Context, counter, n uint64) (uint64, error) {
	res, err := s.propose(ctx, command{Op: "alloc", Kind: counter, Count: n})
	if err != nil {
		return 0, err
	}
	return res.(uint64), nil
}

// OperatorCounts returns how many operators of each kind this replica's
// scheduler started, completed and failed since it started. The caller
// owns the map. Safe for concurrent use.
func (s *Service) OperatorCounts() map[string]OperatorCounts { return s.ops.counts() }

// Telemetry returns readings for placementd's metrics: operators started,
// done and failed, and (on the leader; zero on followers) nodes up and
// down and shards known.
func (s *Service) Telemetry() (started, done, failed func() uint64, up, down, shards func() int64) {
	counts := func() (int64, int64, int64) {
		if lead, _ := s.leader(); !lead {
			return 0, 0, 0
		}
		now := s.cfg.Now()
		nodes := s.cat.Load().Nodes()
		s.view.mu.Lock()
		defer s.view.mu.Unlock()
		var u, d int64
		for _, n := range nodes {
			if s.nodeStatus(n, now).GetState() == pb.NodeState_NODE_STATE_DOWN {
				d++
			} else {
				u++
			}
		}
		return u, d, int64(len(s.view.sortedLocked()))
	}
	return s.ops.Started.Load, s.ops.Done.Load, s.ops.Failed.Load,
		func() int64 { u, _, _ := counts(); return u },
		func() int64 { _, d, _ := counts(); return d },
		func() int64 { _, _, n := counts(); return n }
}

func sortReplicas(rs []multiraft.Replica) {
	slices.SortFunc(rs, func(a, b multiraft.Replica) int { return cmp.Compare(a.ReplicaID, b.ReplicaID) })
}
