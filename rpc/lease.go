package rpc

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/internal/syskeys"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
	"github.com/flotilla-kv/flotilla/shard"
)

// Leases is a node's lease service: package lease's Lessor, which counts
// time for the leases whose home shards the node leads, and its Checker,
// which tells reads whether the leases of the keys they found were alive.
type Leases interface {
	Grant(ctx context.Context, home shard.ShardID, id uint64, ttlSeconds int64) (gotID uint64, ttl int64, redirect bool, rev uint64, err error)
	Revoke(ctx context.Context, home shard.ShardID, id uint64) (rev, deleted uint64, err error)
	KeepAlive(ctx context.Context, home shard.ShardID, id uint64) (ttl int64, err error)
	TimeToLive(ctx context.Context, home shard.ShardID, id uint64, keys bool) (remaining, granted int64, attached [][]byte, err error)
	Attach(ctx context.Context, home shard.ShardID, id uint64, key []byte) (until uint64, err error)
	Status(ctx context.Context, home shard.ShardID, id, rev uint64) (alive bool, until, ended uint64, err error)
	// Dead returns which of the leases ids were not alive at rev (with
	// latest, at a fresh timestamp at or above it: see lease.Checker).
	Dead(ctx context.Context, ids []uint64, rev uint64, latest bool) (map[uint64]bool, error)
}

// SetLeases turns on the lease RPCs and the read fence of leased keys.
// Call it before serving. Without it the lease RPCs answer Unimplemented
// and reads return leased keys as stored.
func (s *KVServer) SetLeases(l Leases) { s.leases = l }

// leaseHome validates a lease request's header and ID.
func (s *KVServer) leaseHome(h *pb.RequestHeader, id uint64, needID bool) (shard.ShardID, error) {
	if s.leases == nil {
		return 0, status.Error(codes.Unimplemented, "leases are not served by this node")
	}
	home, sh, err := header(h)
	if err != nil {
		return 0, err
	}
	if needID && id == 0 {
		return 0, invalid("id", "required")
	}
	// A route older than a split of the home is refused as any request's
	// is, with the descriptors that heal it (the new home among them).
	if d, derr := s.store.Descriptor(home); derr == nil && !sh.Epoch.IsZero() && sh.Epoch.Version != d.Epoch.Version {
		return 0, s.errs.toStatus(&shard.EpochNotMatchError{Requested: sh.Epoch, Current: d}, home, syskeys.LeaseRecordKey(id))
	}
	return home, nil
}

// leaseErr maps a lease request's error to its status.
func (s *KVServer) leaseErr(err error, home shard.ShardID, id uint64) error {
	switch {
	case errors.Is(err, shard.ErrLeaseNotFound):
		return withDetail(codes.NotFound, err.Error(), &pb.LeaseNotFound{Id: id})
	case errors.Is(err, shard.ErrLeaseExists):
		return status.Error(codes.AlreadyExists, err.Error())
	case errors.Is(err, shard.ErrBadTTL):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, shard.ErrLeaseNotReady):
		return withDetail(codes.Unavailable, err.Error(), &pb.Busy{RetryAfterMs: 50})
	}
	return s.errs.toStatus(err, home, syskeys.LeaseRecordKey(id))
}

// LeaseGrant implements pb.KVServer.
func (s *KVServer) LeaseGrant(ctx context.Context, req *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	home, err := s.leaseHome(req.GetHeader(), req.GetId(), false)
	if err != nil {
		return nil, err
	}
	id, ttl, redirect, rev, err := s.leases.Grant(ctx, home, req.GetId(), req.GetTtlSeconds())
	if err != nil {
		return nil, s.leaseErr(err, home, req.GetId())
	}
	return &pb.LeaseGrantResponse{Id: id, TtlSeconds: ttl, Redirect: redirect, Revision: rev}, nil
}

// LeaseRevoke implements pb.KVServer.
func (s *KVServer) LeaseRevoke(ctx context.Context, req *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	home, err := s.leaseHome(req.GetHeader(), req.GetId(), true)
	if err != nil {
		return nil, err
	}
	rev, deleted, err := s.leases.Revoke(ctx, home, req.GetId())
	if err != nil {
		return nil, s.leaseErr(err, home, req.GetId())
	}
	return &pb.LeaseRevokeResponse{Revision: rev, Deleted: deleted}, nil
}

// LeaseKeepAlive implements pb.KVServer.
func (s *KVServer) LeaseKeepAlive(ctx context.Context, req *pb.LeaseKeepAliveRequest) (*pb.LeaseKeepAliveResponse, error) {
	home, err := s.leaseHome(req.GetHeader(), req.GetId(), true)
	if err != nil {
		return nil, err
	}
	ttl, err := s.leases.KeepAlive(ctx, home, req.GetId())
	if err != nil {
		return nil, s.leaseErr(err, home, req.GetId())
	}
	return &pb.LeaseKeepAliveResponse{TtlSeconds: ttl}, nil
}

// LeaseTimeToLive implements pb.KVServer.
func (s *KVServer) LeaseTimeToLive(ctx context.Context, req *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	home, err := s.leaseHome(req.GetHeader(), req.GetId(), true)
	if err != nil {
		return nil, err
	}
	rem, granted, keys, err := s.leases.TimeToLive(ctx, home, req.GetId(), req.GetKeys())
	if err != nil {
		return nil, s.leaseErr(err, home, req.GetId())
	}
	return &pb.LeaseTimeToLiveResponse{TtlSeconds: rem, GrantedTtlSeconds: granted, Keys: keys}, nil
}

// LeaseAttach implements pb.KVServer.
func (s *KVServer) LeaseAttach(ctx context.Context, req *pb.LeaseAttachRequest) (*pb.LeaseAttachResponse, error) {
	home, err := s.leaseHome(req.GetHeader(), req.GetId(), true)
	if err != nil {
		return nil, err
	}
	if len(req.GetKey()) == 0 {
		return nil, invalid("key", "required")
	}
	until, err := s.leases.Attach(ctx, home, req.GetId(), req.GetKey())
	if err != nil {
		return nil, s.leaseErr(err, home, req.GetId())
	}
	return &pb.LeaseAttachResponse{Until: until}, nil
}

// LeaseStatus implements pb.KVServer.
func (s *KVServer) LeaseStatus(ctx context.Context, req *pb.LeaseStatusRequest) (*pb.LeaseStatusResponse, error) {
	home, err := s.leaseHome(req.GetHeader(), req.GetId(), true)
	if err != nil {
		return nil, err
	}
	if req.GetRevision() == 0 {
		return nil, invalid("revision", "required")
	}
	alive, until, ended, err := s.leases.Status(ctx, home, req.GetId(), req.GetRevision())
	if err != nil {
		return nil, s.leaseErr(err, home, req.GetId())
	}
	return &pb.LeaseStatusResponse{Alive: alive, Until: until, Ended: ended}, nil
}

// fenceLeased drops from kvs, in place, the keys whose lease was not
// alive at rev (see Leases.Dead): until its delete applies, a key of an
// ended lease reads as absent. Reads of unleased keys pay nothing.
func (s *KVServer) fenceLeased(ctx context.Context, kvs []shard.KeyValue, rev uint64, latest bool) ([]shard.KeyValue, error) {
	if s.leases == nil {
		return kvs, nil
	}
	var ids []uint64
	for i := range kvs {
		if l := kvs[i].Lease; l != 0 {
			ids = append(ids, l)
		}
	}
	if len(ids) == 0 {
		return kvs, nil
	}
	dead, err := s.leases.Dead(ctx, ids, rev, latest)
	if err != nil || len(dead) == 0 {
		return kvs, err
	}
	out := kvs[:0]
	for _, kv := range kvs {
		if !dead[kv.Lease] {
			out = append(out, kv)
		}
	}
	return out, nil
}

// fenceOne is fenceLeased for one key read by a Get.
func (s *KVServer) fenceOne(ctx context.Context, kv shard.KeyValue, found bool, rev uint64, latest bool) (bool, error) {
	if !found || kv.Lease == 0 || s.leases == nil {
		return found, nil
	}
	kvs, err := s.fenceLeased(ctx, []shard.KeyValue{kv}, rev, latest)
	return len(kvs) == 1, err
}
