package rpc

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/multiraft"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
	"github.com/flotilla-kv/flotilla/shard"
)

// minProgressInterval is the shortest progress interval a watch may ask
// for: each idle interval of a watched shard costs its leader a Resolve
// (an oracle call and a log entry).
const minProgressInterval = 10 * time.Millisecond

// Watch implements pb.KVServer: it streams the events of one shard
// replica's shard.Watcher (see shard/watch.go), and its progress every
// progress_interval_ms. When the shard's resolved revision did not move
// for an interval, the replica resolves the shard (shard.Store.Resolve)
// so that progress moves with time; a replica that does not lead cannot,
// and ends the stream with NotLeader, so the client moves the watch to the
// leader. Before any error that ends the stream it sends the progress the
// watch made, from which the client resumes.
func (s *KVServer) Watch(req *pb.WatchRequest, stream pb.KV_WatchServer) error {
	id, epoch, _, err := readHeader(req.GetHeader())
	if err != nil {
		return err
	}
	if err := checkSpan(req.GetStart(), req.GetEnd()); err != nil {
		return err
	}
	interval := time.Duration(req.GetProgressIntervalMs()) * time.Millisecond
	if interval != 0 && interval < minProgressInterval {
		return invalid("progress_interval_ms", "below the minimum of 10")
	}
	w, startRev, err := s.store.Watch(id, epoch, req.GetStart(), req.GetEnd(), req.GetStartRevision(), req.GetPrevKv())
	if err != nil {
		return s.errs.toStatus(err, id, req.GetStart(), req.GetEnd())
	}
	defer w.Close()
	ctx := stream.Context()
	sent := startRev - 1 // the progress the client knows
	if err := stream.Send(&pb.WatchResponse{Created: true, ProgressRevision: sent}); err != nil {
		return err
	}
	for {
		next, cancel := ctx, context.CancelFunc(func() {})
		if interval > 0 {
			next, cancel = context.WithTimeout(ctx, interval)
		}
		events, progress, err := w.Next(next)
		cancel()
		if len(events) > 0 {
			if err := stream.Send(watchResponse(events, progress)); err != nil {
				return err
			}
			sent = progress
			continue
		}
		switch {
		case err == nil:
			continue
		case ctx.Err() != nil:
			return status.FromContextError(ctx.Err()).Err()
		case errors.Is(err, context.DeadlineExceeded):
			// An interval passed with no event.
			p := w.Progress()
			if p <= sent {
				if _, err := s.store.Resolve(ctx, id); err != nil {
					var nle *multiraft.NotLeaderError
					if errors.As(err, &nle) || errors.Is(err, shard.ErrShardNotFound) {
						return s.errs.toStatus(err, id, req.GetStart(), req.GetEnd())
					}
					continue // try again next interval
				}
				p = w.Progress()
			}
			if p > sent {
				if err := stream.Send(&pb.WatchResponse{ProgressRevision: p}); err != nil {
					return err
				}
				sent = p
			}
			continue
		}
		if progress > sent {
			if serr := stream.Send(&pb.WatchResponse{ProgressRevision: progress}); serr != nil {
				return serr
			}
		}
		if errors.Is(err, shard.ErrWatchClosed) {
			return status.Error(codes.Unavailable, err.Error())
		}
		return s.errs.toStatus(err, id, req.GetStart(), req.GetEnd())
	}
}

// watchResponse converts events (whole writes) and the progress after
// them.
func watchResponse(events []shard.Event, progress uint64) *pb.WatchResponse {
	resp := &pb.WatchResponse{ProgressRevision: progress, Events: make([]*pb.Event, len(events))}
	for i := range events {
		ev := &events[i]
		pe := &pb.Event{Kv: keyValueToProto(&ev.KV)}
		if ev.Delete {
			pe.Type = pb.Event_DELETE
		}
		if ev.PrevKV != nil {
			pe.PrevKv = keyValueToProto(ev.PrevKV)
		}
		resp.Events[i] = pe
	}
	return resp
}
