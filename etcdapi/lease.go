package etcdapi

import (
	"context"
	"errors"
	"io"
	"math"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/router"
)

// maxLeaseTTL is the longest TTL, in seconds, etcd grants (and the
// fleet's lessor too).
const maxLeaseTTL = 9_000_000_000

// keepAlivesInFlight bounds the keepalives one LeaseKeepAlive stream has
// in flight to the fleet at once.
const keepAlivesInFlight = 64

// headerRevisionAge is how long a fresh revision read for the header of
// a lease answer that reads none (KeepAlive, TimeToLive, Leases) is
// reused.
const headerRevisionAge = time.Second

// leaseServer serves etcd's Lease service over the router's leases.
//
// Lease IDs are int64 in etcd and uint64 in the fleet: the API grants
// only IDs in [1, 2^63), treats a negative ID as a lease that does not
// exist, and leaves out of Leases any lease granted through the router
// with an ID etcd cannot represent.
type leaseServer struct {
	pb.UnimplementedLeaseServer
	s *Server

	// rev caches a recent revision for the headers of answers that read
	// none, so that a busy keepalive stream costs no extra reads.
	rev struct {
		sync.Mutex
		rev uint64
		at  time.Time
	}
}

// LeaseGrant grants a lease: with ID 0 the fleet chooses the ID (an
// oracle timestamp), otherwise the ID asked for, refused with etcd's
// ErrLeaseExist when it exists. A TTL below the fleet's minimum is raised
// to it (as etcd raises to its own); a TTL above etcd's maximum is
// refused with ErrLeaseTTLTooLarge. The header's revision is the grant's.
func (l *leaseServer) LeaseGrant(ctx context.Context, req *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	if req.GetID() < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "etcdapi: lease grant: negative lease ID %d", req.GetID())
	}
	if req.GetTTL() > maxLeaseTTL {
		return nil, rpctypes.ErrGRPCLeaseTTLTooLarge
	}
	g, err := l.s.r.GrantID(ctx, uint64(req.GetID()), max(req.GetTTL(), 1))
	if err != nil {
		if status.Code(err) == codes.AlreadyExists {
			return nil, rpctypes.ErrGRPCLeaseExist
		}
		return nil, leaseStatus(err)
	}
	if g.ID > math.MaxInt64 {
		// The fleet's IDs are oracle timestamps, far below 2^63 for
		// centuries; one above cannot be handed to an etcd client.
		if _, rerr := l.s.r.Revoke(ctx, g.ID); rerr != nil {
			l.s.log.Warn("revoking a lease whose ID etcd cannot represent", "lease", g.ID, "err", rerr)
		}
		return nil, status.Errorf(codes.Internal, "etcdapi: lease grant: the fleet chose lease ID %d, beyond etcd's int64", g.ID)
	}
	l.noteRevision(g.Revision)
	return &pb.LeaseGrantResponse{Header: l.s.header(g.Revision), ID: int64(g.ID), TTL: g.TTL}, nil
}

// LeaseRevoke ends a lease and deletes its keys before answering, with
// the revision the lease ended at; a lease that does not exist is etcd's
// ErrLeaseNotFound.
func (l *leaseServer) LeaseRevoke(ctx context.Context, req *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	if req.GetID() <= 0 {
		return nil, rpctypes.ErrGRPCLeaseNotFound
	}
	res, err := l.s.r.Revoke(ctx, uint64(req.GetID()))
	if err != nil {
		return nil, leaseStatus(err)
	}
	l.noteRevision(res.Revision)
	return &pb.LeaseRevokeResponse{Header: l.s.header(res.Revision)}, nil
}

// LeaseKeepAlive answers each keepalive of the stream with the lease's
// restarted TTL, or TTL 0 when the lease does not exist (etcd's answer
// for a lease that is gone). Keepalives are served concurrently, at most
// keepAlivesInFlight at once, and a keepalive for a lease whose previous
// one is still in flight is dropped: that one's answer serves both, so
// answers may come in another order than the requests, as clientv3
// (which matches them by ID) allows. A keepalive that fails for another
// reason (the lease's home shard unavailable) is not answered and is
// logged: clientv3 sends a keepalive again every half second while a
// lease has no answer, and treats the lease as expired once its TTL
// passes without one, which is the truth the fleet would tell too.
//
// The stream ends when the client ends it or its context ends.
func (l *leaseServer) LeaseKeepAlive(stream pb.Lease_LeaseKeepAliveServer) error {
	ctx := stream.Context()
	var (
		sendMu   sync.Mutex
		inFlight = map[int64]bool{}
		flightMu sync.Mutex
		wg       sync.WaitGroup
		sendErr  = make(chan error, 1)
	)
	sem := make(chan struct{}, keepAlivesInFlight)
	defer wg.Wait()
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		select {
		case err := <-sendErr:
			return err
		default:
		}
		id := req.GetID()
		flightMu.Lock()
		busy := inFlight[id]
		inFlight[id] = true
		flightMu.Unlock()
		if busy {
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		wg.Go(func() {
			defer func() { <-sem }()
			resp, err := l.keepAlive(ctx, id)
			flightMu.Lock()
			delete(inFlight, id)
			flightMu.Unlock()
			if err != nil {
				if ctx.Err() == nil {
					l.s.log.Warn("lease keepalive failed", "lease", id, "err", err)
				}
				return
			}
			sendMu.Lock()
			defer sendMu.Unlock()
			if err := stream.Send(resp); err != nil {
				select {
				case sendErr <- err:
				default:
				}
			}
		})
	}
}

// keepAlive restarts lease id's TTL once and returns the answer to send:
// TTL 0 for a lease that does not exist.
func (l *leaseServer) keepAlive(ctx context.Context, id int64) (*pb.LeaseKeepAliveResponse, error) {
	var ttl int64
	if id > 0 {
		got, err := l.s.r.KeepAliveOnce(ctx, uint64(id))
		switch {
		case errors.Is(err, router.ErrLeaseNotFound):
		case err != nil:
			return nil, err
		default:
			ttl = got
		}
	}
	return &pb.LeaseKeepAliveResponse{Header: l.s.header(l.recentRevision(ctx)), ID: id, TTL: ttl}, nil
}

// LeaseTimeToLive reports a lease's remaining and granted TTL, and with
// keys the keys attached to it. A lease that does not exist is answered,
// as etcd does, with TTL -1 rather than an error.
func (l *leaseServer) LeaseTimeToLive(ctx context.Context, req *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	resp := &pb.LeaseTimeToLiveResponse{ID: req.GetID(), TTL: -1}
	if req.GetID() > 0 {
		got, err := l.s.r.TimeToLive(ctx, uint64(req.GetID()), req.GetKeys())
		switch {
		case errors.Is(err, router.ErrLeaseNotFound):
		case err != nil:
			return nil, leaseStatus(err)
		default:
			resp.TTL, resp.GrantedTTL, resp.Keys = got.TTL, got.GrantedTTL, got.Keys
		}
	}
	resp.Header = l.s.header(l.recentRevision(ctx))
	return resp, nil
}

// LeaseLeases lists the leases that exist, in ID order. A lease whose end
// is under way may still be listed (router.Client.Leases).
func (l *leaseServer) LeaseLeases(ctx context.Context, _ *pb.LeaseLeasesRequest) (*pb.LeaseLeasesResponse, error) {
	ids, err := l.s.r.Leases(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &pb.LeaseLeasesResponse{Header: l.s.header(l.recentRevision(ctx)), Leases: make([]*pb.LeaseStatus, 0, len(ids))}
	for _, id := range ids {
		if id > math.MaxInt64 {
			continue // granted through the router with an ID etcd cannot hold
		}
		resp.Leases = append(resp.Leases, &pb.LeaseStatus{ID: int64(id)})
	}
	return resp, nil
}

// recentRevision returns a revision for the header of an answer that
// reads none: one read fresh (Server.freshRevision) at most
// headerRevisionAge ago, or one a grant or revoke of this server wrote
// since, whichever is newer. It never fails: when the read does, the
// last revision known (0 at first) serves, as a header revision is
// nothing an etcd client relies on for leases and a lease answer should
// not fail for a shard that does not hold the lease.
func (l *leaseServer) recentRevision(ctx context.Context) uint64 {
	l.rev.Lock()
	defer l.rev.Unlock()
	if l.rev.rev != 0 && time.Since(l.rev.at) < headerRevisionAge {
		return l.rev.rev
	}
	rctx, cancel := context.WithTimeout(ctx, headerRevisionAge)
	defer cancel()
	rev, err := l.s.freshRevision(rctx)
	if err != nil {
		l.s.log.Debug("reading a revision for a lease answer's header", "err", err)
		return l.rev.rev
	}
	l.rev.rev, l.rev.at = max(l.rev.rev, rev), time.Now()
	return l.rev.rev
}

// noteRevision raises the cached header revision to rev, a revision this
// server just wrote at, without making the cache fresher.
func (l *leaseServer) noteRevision(rev uint64) {
	l.rev.Lock()
	defer l.rev.Unlock()
	l.rev.rev = max(l.rev.rev, rev)
}

// leaseStatus maps a lease call's error: a lease that does not exist is
// etcd's ErrLeaseNotFound, the rest as toStatus maps them.
func leaseStatus(err error) error {
	if errors.Is(err, router.ErrLeaseNotFound) {
		return rpctypes.ErrGRPCLeaseNotFound
	}
	return toStatus(err)
}
