package placement

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/placement/tso"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// The timestamp oracle
//
// The fleet's revisions come from one oracle (placement/tso) run by the
// catalogue group's leader. Its window limit is the catalogue counter
// CounterTimestamp, raised through the catalogue's Raft log (Save) and
// read through it (Load proposes a raise that changes nothing and gets
// the counter back, so it reads every limit any earlier leader saved).
//
// Each leadership opens its own oracle, the first time it is asked for
// timestamps, and never reuses one from an earlier leadership: another
// leader may have handed out timestamps above that oracle's window in
// between. A new oracle starts above every limit saved before, so above
// every timestamp any earlier leader handed out.
//
// The oracle also keeps the last write's timestamp (tso, "The last
// write"): each request says which of its timestamps include the
// writes (write_span), every answer carries the last write's timestamp,
// and a request for no timestamps asks for that alone. A new leadership's
// oracle answers the limit it loaded until its first write: at or above
// everything handed out before, so a read at it still sees every
// acknowledged write. The answer is fenced like the timestamps (below):
// a deposed leader's last write could miss writes its successor stamped.
//
// A deposed leader that has not yet noticed could still hand out
// timestamps from its window, below those its successor already handed
// out for acknowledged writes. So GetTimestamps answers only after
// confirming, once it has the timestamps, that this replica still leads:
// a lease read of the catalogue group, which the engine serves only while
// no other replica can have been elected (its lease, from a quorum's
// acknowledgements, on the monotonic clock; without a valid lease it
// confirms the lead with a quorum round, as a linearizable read does).
// Timestamps it returns were therefore handed out before any successor
// was elected, and every successor's are higher. This is the assumption
// lease reads make of the nodes' clocks (see the README's guarantees).

// oracleHolder is the oracle of the current leadership.
type oracleHolder struct {
	mu    sync.Mutex
	o     *tso.Oracle
	since int64 // the leadership it belongs to: core.leaderSince when opened
}

// catalogueLimit is the tso.Store of the oracle: CounterTimestamp.
type catalogueLimit struct{ c *core }

// Load implements tso.Store.
func (l catalogueLimit) Load(ctx context.Context) (tso.Timestamp, error) {
	res, err := l.c.propose(ctx, command{Op: "raise", Kind: CounterTimestamp, ID: 1})
	if err != nil {
		return 0, err
	}
	return tso.Timestamp(res.(uint64)), nil
}

// Save implements tso.Store.
func (l catalogueLimit) Save(ctx context.Context, limit tso.Timestamp) error {
	_, err := l.c.propose(ctx, command{Op: "raise", Kind: CounterTimestamp, ID: uint64(limit)})
	return err
}

// oracle returns the oracle of this replica's current leadership, opening
// it if need be; since is the leadership's start (see observeLeader).
func (c *core) oracle(ctx context.Context, since int64) (*tso.Oracle, error) {
	h := &c.clock
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.o != nil && h.since == since {
		return h.o, nil
	}
	if h.o != nil {
		_ = h.o.Close()
		h.o = nil
	}
	o, err := tso.Open(ctx, catalogueLimit{c}, tso.Config{Clock: tso.ClockFunc(c.cfg.Now)})
	if err != nil {
		return nil, err
	}
	h.o, h.since = o, since
	return o, nil
}

// dropOracle closes o if it is still the current oracle (it failed: a
// Save did not complete), so the next request opens a new one.
func (c *core) dropOracle(o *tso.Oracle) {
	h := &c.clock
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.o == o {
		_ = h.o.Close()
		h.o = nil
	}
}

// closeOracle closes the current oracle, if any (the service stops).
func (c *core) closeOracle() {
	h := &c.clock
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.o != nil {
		_ = h.o.Close()
		h.o = nil
	}
}

// GetTimestamps implements pb.PlacementServer: see the API's doc.
func (s *Service) GetTimestamps(ctx context.Context, req *pb.GetTimestampsRequest) (*pb.GetTimestampsResponse, error) {
	return forward(s, ctx, req, pb.PlacementClient.GetTimestamps, s.getTimestamps)
}

// StreamTimestamps implements pb.PlacementServer: see the API's doc. Each
// request is served as GetTimestamps serves it on the leader, fencing
// included; the first error ends the stream.
func (s *Service) StreamTimestamps(stream pb.Placement_StreamTimestampsServer) error {
	ctx := stream.Context()
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		resp, err := s.FramedTimestamps(ctx, req)
		if err != nil {
			return err
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

// FramedTimestamps answers one request of a framed timestamp connection
// (rpc.TimestampServer, placementd's handler for them) as StreamTimestamps
// answers one of its stream's: on the leader only (a follower answers
// UNAVAILABLE, and the client goes on to the next address), fencing
// included. It may be called from many goroutines at once.
func (s *Service) FramedTimestamps(ctx context.Context, req *pb.GetTimestampsRequest) (*pb.GetTimestampsResponse, error) {
	if lead, _ := s.observeLeader(); !lead {
		return nil, status.Error(codes.Unavailable, "placement: not leading; stream timestamps from the leader")
	}
	return s.getTimestamps(ctx, req)
}

func (s *Service) getTimestamps(ctx context.Context, req *pb.GetTimestampsRequest) (*pb.GetTimestampsResponse, error) {
	n, span := req.GetCount(), req.GetWriteSpan()
	if n > tso.LogicalRange {
		return nil, status.Errorf(codes.InvalidArgument, "count: %d is outside [0, %d]", n, tso.LogicalRange)
	}
	if span > n {
		return nil, status.Errorf(codes.InvalidArgument, "write_span: %d is above the count %d", span, n)
	}
	since := s.leaderSince.Load()
	if since == 0 {
		return nil, status.Error(codes.Unavailable, "placement: not leading; retry")
	}
	o, err := s.oracle(ctx, since)
	if err != nil {
		return nil, toStatus(fmt.Errorf("placement: starting the timestamp oracle: %w", err))
	}
	var first, lastWrite tso.Timestamp
	if n == 0 {
		lastWrite, err = o.LastWrite(ctx)
	} else {
		first, lastWrite, err = o.NextWrites(ctx, int(n), int(span))
	}
	if err != nil {
		if errors.Is(err, tso.ErrSaveFailed) || errors.Is(err, tso.ErrClosed) {
			s.dropOracle(o)
		}
		return nil, status.Errorf(codes.Unavailable, "placement: timestamp oracle: %v", err)
	}
	// Fencing: see above. A lease with half of it left confirms the lead
	// without a round of the engine's worker; otherwise the lease read
	// confirms it (and renews the lease).
	if !s.engine.LeaseHeld(CatalogueGroup) {
		if _, err := s.cfg.Runtime.Wait(ctx, s.engine.ReadFuture(CatalogueGroup, multiraft.ReadLease)); err != nil {
			return nil, status.Errorf(codes.Unavailable, "placement: confirming the lead for timestamps: %v", err)
		}
	}
	if s.leaderSince.Load() != since {
		return nil, status.Error(codes.Unavailable, "placement: the lead changed while handing out timestamps; retry")
	}
	return &pb.GetTimestampsResponse{First: uint64(first), LastWrite: uint64(lastWrite)}, nil
}
