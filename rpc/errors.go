package rpc

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"

	"github.com/flotilla-kv/flotilla/internal/keyfmt"
	"github.com/flotilla-kv/flotilla/internal/keys"
	"github.com/flotilla-kv/flotilla/multiraft"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
	"github.com/flotilla-kv/flotilla/rpc/pbconv"
	"github.com/flotilla-kv/flotilla/shard"
)

// errorMapper turns engine and shard errors into the statuses documented
// in common.proto.
type errorMapper struct {
	store    *shard.Store
	resolver Resolver
}

// toStatus maps err, raised while serving shard id for key (nil for
// requests without one), to a gRPC status error. The message cuts key, and
// the other keys of the request in alsoCut, by keyCut.
func (m errorMapper) toStatus(err error, id shard.ShardID, key []byte, alsoCut ...[]byte) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err // already a status (a forwarded request's answer)
	}
	msg := keyCut(keyCut(err.Error(), key), alsoCut...)
	var nle *multiraft.NotLeaderError
	var enm *shard.EpochNotMatchError
	var ce *shard.CompactedError
	var fe *shard.FutureRevisionError
	var le *shard.LockedError
	var wc *shard.ConflictError
	switch {
	case errors.As(err, &le):
		l := &le.Lock
		return withDetail(codes.Aborted, msg, &pb.Locked{Key: l.Key, Start: l.Start, Primary: l.Primary, Prewrite: l.Prewrite, TtlMs: l.TTL})
	case errors.As(err, &wc):
		return withDetail(codes.Aborted, msg, &pb.WriteConflict{Key: wc.Key, Revision: wc.Revision})
	case errors.Is(err, shard.ErrTxnAborted):
		return withDetail(codes.Aborted, msg, &pb.TxnAborted{})
	case errors.Is(err, shard.ErrTxnCommitted), errors.Is(err, shard.ErrTxnForgotten):
		// Final answers about a transaction, not about the node: a retry
		// gets the same.
		return status.Error(codes.FailedPrecondition, msg)
	case errors.As(err, &ce):
		return withDetail(codes.OutOfRange, msg, &pb.Compacted{ShardId: uint64(ce.Shard), CompactRevision: ce.CompactRevision})
	case errors.As(err, &fe):
		return withDetail(codes.OutOfRange, msg, &pb.FutureRevision{ShardId: uint64(fe.Shard), Revision: fe.Revision, CurrentRevision: fe.Current})
	case errors.As(err, &nle):
		d := &pb.NotLeader{ShardId: uint64(id), LeaderReplicaId: uint64(nle.Leader), LeaderNodeId: uint64(nle.Node)}
		if nle.Node != 0 && m.resolver != nil {
			d.LeaderAddress, _ = m.resolver.Resolve(nle.Node)
		}
		return withDetail(codes.FailedPrecondition, msg, d)
	case errors.As(err, &enm):
		d := &pb.EpochNotMatch{Current: []*pb.Descriptor{pbconv.DescriptorToProto(enm.Current)}}
		// After a split the key may now belong to the right-hand shard:
		// send its descriptor too, so the router heals in one step.
		if key != nil && m.store != nil && !enm.Current.ContainsKey(key) {
			// [key, key+"\x00") holds key alone.
			for _, o := range m.store.DescriptorsOverlapping(key, keys.ImmediateSuccessor(nil, key)) {
				if o.ShardID != enm.Current.ShardID {
					d.Current = append(d.Current, pbconv.DescriptorToProto(o))
				}
			}
		}
		return withDetail(codes.FailedPrecondition, msg, d)
	case errors.Is(err, shard.ErrShardNotFound), errors.Is(err, multiraft.ErrGroupNotFound), errors.Is(err, multiraft.ErrGroupRemoved):
		return withDetail(codes.NotFound, msg, &pb.ShardNotFound{ShardId: uint64(id)})
	case errors.Is(err, shard.ErrKeyNotInShard):
		d := &pb.KeyNotInShard{ShardId: uint64(id), Key: key}
		if m.store != nil {
			if cur, derr := m.store.Descriptor(id); derr == nil {
				d.Current = pbconv.DescriptorToProto(cur)
			}
		}
		return withDetail(codes.OutOfRange, msg, d)
	case errors.Is(err, multiraft.ErrAmbiguous), errors.Is(err, multiraft.ErrStopped) && errors.Is(err, multiraft.ErrAmbiguous):
		return withDetail(codes.Unknown, msg, &pb.Ambiguous{Reason: msg})
	case errors.Is(err, multiraft.ErrProposalDropped):
		return withDetail(codes.ResourceExhausted, msg, &pb.Busy{RetryAfterMs: 10})
	case errors.Is(err, shard.ErrLeasePromise):
		return withDetail(codes.FailedPrecondition, msg, &pb.LeasePromise{})
	case errors.Is(err, shard.ErrStaleRevision):
		// Refused as it applied, writing nothing: a retry is stamped anew.
		return withDetail(codes.Aborted, msg, &pb.Busy{RetryAfterMs: 1})
	case errors.Is(err, shard.ErrNoRevision):
		// The oracle did not answer: the write never entered the log.
		return withDetail(codes.Unavailable, msg, &pb.Busy{RetryAfterMs: 50})
	case errors.Is(err, shard.ErrEmptyKey), errors.Is(err, shard.ErrKeyTooLarge), errors.Is(err, shard.ErrValueTooLarge),
		errors.Is(err, shard.ErrBatchTooLarge), errors.Is(err, shard.ErrInvalidSplit), errors.Is(err, shard.ErrBadCommand),
		errors.Is(err, shard.ErrBadDescriptor), errors.Is(err, multiraft.ErrInvalidConfChange):
		return status.Error(codes.InvalidArgument, msg)
	case errors.Is(err, shard.ErrStaleSequence):
		return status.Error(codes.FailedPrecondition, msg)
	case errors.Is(err, multiraft.ErrGroupExists):
		return status.Error(codes.AlreadyExists, msg)
	case errors.Is(err, shard.ErrNotReady), errors.Is(err, multiraft.ErrStopped):
		return status.Error(codes.Unavailable, msg)
	case errors.Is(err, multiraft.ErrTransferFailed):
		return status.Error(codes.Aborted, msg)
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, msg)
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, msg)
	}
	return status.Error(codes.Internal, msg)
}

// keyCut returns msg with every quoted copy of each key (as %q prints it)
// cut to keyfmt.Quote's short form, so an error about a long key does not
// repeat the whole key. Messages come from packages that quote the keys
// they refuse in full (shard's KeyNotInShard, for one).
func keyCut(msg string, keys ...[]byte) string {
	for _, k := range keys {
		if len(k) > keyfmt.MaxShown {
			msg = strings.ReplaceAll(msg, strconv.Quote(string(k)), keyfmt.Quote(k))
		}
	}
	return msg
}

func withDetail(c codes.Code, msg string, d protoadapt.MessageV1) error {
	s, err := status.New(c, msg).WithDetails(d)
	if err != nil {
		return status.Error(c, msg)
	}
	return s.Err()
}

// invalid returns an InvalidArgument status naming the field.
func invalid(field, problem string) error {
	return status.Errorf(codes.InvalidArgument, "%s: %s", field, problem)
}
