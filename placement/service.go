package placement

import (
	"cmp"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/flotilla-kv/flotilla/multiraft"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// Engine is what the service needs of the multiraft engine that hosts
// the catalogue group; *multiraft.Engine implements it. Implementations
// are safe for concurrent use.
type Engine interface {
	// Groups lists the groups the engine hosts.
	Groups() []multiraft.GroupID
	// CreateGroup creates this node's replica of a group.
	CreateGroup(id multiraft.GroupID, replica multiraft.ReplicaID, m multiraft.Membership, init func(b *pebble.Batch) error) error
	// Summaries reports, for every group, whether this replica leads it
	// and who does.
	Summaries() []multiraft.GroupSummary
	// ProposeFuture proposes cmd to a group.
	ProposeFuture(id multiraft.GroupID, cmd []byte) *multiraft.Future
	// ReadFuture resolves once a read of the group at mode may be served
	// (ReadLinearizable: this replica confirmed it still leads).
	ReadFuture(id multiraft.GroupID, mode multiraft.ReadMode) *multiraft.Future
	// LeaseHeld reports, without waiting, that this replica leads the
	// group under a lease with at least half of it left (false: ask
	// ReadFuture with ReadLease).
	LeaseHeld(id multiraft.GroupID) bool
}

var _ Engine = (*multiraft.Engine)(nil)

// Catalogue is a placement replica's handle on its catalogue, the state
// machine of the catalogue group: the engine builds the state machine
// through StateMachineFunc (when Open recovers the group, or when
// Service.Bootstrap creates it), and the Service reads the current one.
// It exists apart from the Service because the engine needs it before the
// Service can have the engine: make a Catalogue, open the engine with its
// StateMachineFunc, then pass both to New. The zero value is ready to
// use. Safe for concurrent use.
type Catalogue struct {
	cur atomic.Pointer[catalogue]
}

// StateMachineFunc returns the constructor to set as the engine's
// multiraft.Config.NewStateMachine. It builds the catalogue group's state
// machine, and refuses any other group.
func (c *Catalogue) StateMachineFunc() multiraft.NewStateMachineFunc {
	return func(g multiraft.GroupID, _ multiraft.ReplicaID, r pebble.Reader) (multiraft.StateMachine, error) {
		if g != CatalogueGroup {
			return nil, fmt.Errorf("placement: unexpected group %d", g)
		}
		sm, err := newCatalogue(r)
		if err != nil {
			return nil, err
		}
		c.cur.Store(sm)
		return sm, nil
	}
}

// load returns the current catalogue, nil before the engine built one.
func (c *Catalogue) load() *catalogue { return c.cur.Load() }

// core is what the API (Service) and the coordinator share: the
// configuration, the engine and its catalogue, the leader's view and the
// record of operators, and the timestamp oracle. Every field is set at
// construction and never replaced; each is safe for concurrent use.
type core struct {
	cfg    Config
	engine Engine
	cat    *Catalogue
	view   *view
	// leaderSince is when this replica was first seen leading in its
	// current term as leader (unix nanos), 0 while it follows; see
	// observeLeader.
	leaderSince atomic.Int64
	ops         *opHistory
	// clock is the timestamp oracle of this replica's current leadership
	// (see timestamps.go).
	clock oracleHolder
	// coord is Run's coordinator while Run runs (nil otherwise): the
	// operators asked for through the API run as its flights (manual.go).
	coord atomic.Pointer[coordinator]
}

// Service is the placement service of one placementd: the gRPC Placement
// API (api.go; every request reaching a follower is forwarded to the
// leader, forward.go) over the catalogue and the leader's view, and Run,
// the coordinator that schedules while this replica leads
// (coordinator.go). Its methods are safe for concurrent use.
type Service struct {
	pb.UnimplementedPlacementServer
	*core
	healthCache healthCache
}

// New returns the service of one placement replica: cfg (validated, see
// Config.Validate), the Catalogue whose StateMachineFunc engine was opened
// with, and that engine. Then call Bootstrap once, serve the API, and run
// Run.
func New(cfg Config, cat *Catalogue, engine Engine) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cat == nil || engine == nil {
		return nil, fmt.Errorf("placement: New needs a Catalogue and an Engine")
	}
	return newService(cfg, cat, engine), nil
}

// newService is New without the checks, for tests that need no engine.
func newService(cfg Config, cat *Catalogue, engine Engine) *Service {
	return &Service{core: &core{cfg: cfg.withDefaults(), engine: engine, cat: cat, view: newView(), ops: newOpHistory(64)}}
}

// Bootstrap creates this replica of the catalogue group if the engine did
// not recover it: every placement replica is created with the same
// membership (all of Config.Peers). Call it once, after New.
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

func sortReplicas(rs []multiraft.Replica) {
	slices.SortFunc(rs, func(a, b multiraft.Replica) int { return cmp.Compare(a.ReplicaID, b.ReplicaID) })
}

// leadership returns whether the engine hosts the catalogue group, whether
// this replica leads it, as the engine last published it, and the
// leader's address otherwise ("" if unknown).
func (c *core) leadership() (hosted, lead bool, addr string) {
	for _, g := range c.engine.Summaries() {
		if g.Group == CatalogueGroup {
			if g.Leading {
				return true, true, ""
			}
			return true, false, c.cfg.Peers[g.LeaderNode]
		}
	}
	return false, false, ""
}

// leader returns whether this replica leads the catalogue, and the
// leader's address otherwise ("" if unknown). It changes nothing; see
// observeLeader.
func (c *core) leader() (bool, string) {
	_, lead, addr := c.leadership()
	return lead, addr
}

// observeLeader is leader that also records what it sees in leaderSince:
// the time this replica was first seen leading (the scheduler waits a
// while after it, so the view can fill), or 0 once it is seen following.
// Requests, rounds, executor steps, ID reservations and the health and
// telemetry readings all observe the leadership this way, so whichever
// sees a change first records it.
func (c *core) observeLeader() (bool, string) {
	hosted, lead, addr := c.leadership()
	switch {
	case lead:
		if c.leaderSince.Load() == 0 {
			c.leaderSince.Store(c.cfg.Now().UnixNano())
		}
	case hosted:
		c.leaderSince.Store(0)
	}
	return lead, addr
}

// since returns when this replica was first seen leading (see
// observeLeader); the zero Unix time while it follows.
func (c *core) since() time.Time { return time.Unix(0, c.leaderSince.Load()) }
