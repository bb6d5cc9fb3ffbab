package rpc

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// TestWatchStream: a watch stream says where it starts, delivers every
// write to its range once, in revision order, with progress; an idle
// stream's progress moves with time, because the leader resolves the
// shard; reads at a revision agree with the stream.
func TestWatchStream(t *testing.T) {
	s := newStack(t, stackConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	kv := s.kv()
	h := &pb.RequestHeader{ShardId: 1}
	stream, err := kv.Watch(ctx, &pb.WatchRequest{Header: h, Start: []byte("k"), End: []byte("l"), PrevKv: true, ProgressIntervalMs: 20})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil || !first.GetCreated() {
		t.Fatalf("first response: %v, %v", first, err)
	}
	var revs []uint64
	for _, k := range []string{"k1", "a", "k2", "k1"} {
		resp, err := kv.Put(ctx, &pb.PutRequest{Header: h, Key: []byte(k), Value: []byte("v" + k)})
		if err != nil {
			t.Fatal(err)
		}
		if k[0] == 'k' {
			revs = append(revs, resp.GetRevision())
		}
	}
	del, err := kv.Delete(ctx, &pb.DeleteRequest{Header: h, Key: []byte("k2")})
	if err != nil {
		t.Fatal(err)
	}
	revs = append(revs, del.GetRevision())

	var got []*pb.Event
	progress := first.GetProgressRevision()
	for len(got) < len(revs) {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetProgressRevision() < progress {
			t.Fatalf("progress went back: %d after %d", resp.GetProgressRevision(), progress)
		}
		progress = resp.GetProgressRevision()
		got = append(got, resp.GetEvents()...)
	}
	for i, ev := range got {
		if ev.GetKv().GetModRevision() != revs[i] {
			t.Fatalf("event %d at %d, want %d", i, ev.GetKv().GetModRevision(), revs[i])
		}
	}
	if last := got[2]; last.GetType() != pb.Event_PUT || string(last.GetPrevKv().GetValue()) != "vk1" {
		t.Fatalf("second put of k1: %v", last)
	}
	if d := got[3]; d.GetType() != pb.Event_DELETE || string(d.GetPrevKv().GetValue()) != "vk2" {
		t.Fatalf("delete of k2: %v", d)
	}
	// No more writes: progress still moves past the last one.
	for progress <= revs[len(revs)-1] {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetEvents()) != 0 {
			t.Fatalf("an event nobody wrote: %v", resp)
		}
		progress = resp.GetProgressRevision()
	}
	// Reads at the progress revision and at the first write agree with the
	// events.
	at, err := kv.Get(ctx, &pb.GetRequest{Header: h, Key: []byte("k1"), Revision: revs[0]})
	if err != nil || string(at.GetValue()) != "vk1" || at.GetRevision() != revs[0] {
		t.Fatalf("get at %d: %v, %v", revs[0], at, err)
	}
	scan, err := kv.Scan(ctx, &pb.ScanRequest{Header: h, Start: []byte("k"), End: []byte("l"), Revision: progress})
	if err != nil || len(scan.GetKvs()) != 1 || string(scan.GetKvs()[0].GetKey()) != "k1" || scan.GetRevision() != progress {
		t.Fatalf("scan at %d: %v, %v", progress, scan, err)
	}
	latest, err := kv.Get(ctx, &pb.GetRequest{Header: h, Key: []byte("k1")})
	if err != nil || latest.GetRevision() < revs[len(revs)-1] {
		t.Fatalf("latest get's revision: %v, %v", latest, err)
	}
}

// TestReadAtRevisionErrors: a revision in the future and a compacted one
// are refused with OUT_OF_RANGE and their details.
func TestReadAtRevisionErrors(t *testing.T) {
	s := newStack(t, stackConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	kv := s.kv()
	h := &pb.RequestHeader{ShardId: 1}
	put, err := kv.Put(ctx, &pb.PutRequest{Header: h, Key: []byte("a"), Value: []byte("1")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = kv.Get(ctx, &pb.GetRequest{Header: h, Key: []byte("a"), Revision: put.GetRevision() << 8})
	if st, _ := status.FromError(err); st.Code() != codes.OutOfRange || !hasDetail[*pb.FutureRevision](st) {
		t.Fatalf("get at a future revision: %v", err)
	}
	// A shard that never pruned refuses no revision: compact it.
	if _, err := kv.Compact(ctx, &pb.CompactRequest{Header: h, Revision: put.GetRevision()}); err != nil {
		t.Fatal(err)
	}
	stream, err := kv.Watch(ctx, &pb.WatchRequest{Header: h, StartRevision: 1})
	if err != nil {
		t.Fatal(err)
	}
	for {
		_, err := stream.Recv()
		if err == nil {
			continue
		}
		if st, _ := status.FromError(err); errors.Is(err, context.DeadlineExceeded) || st.Code() != codes.OutOfRange || !hasDetail[*pb.Compacted](st) {
			t.Fatalf("watch from revision 1: %v", err)
		}
		break
	}
}

func hasDetail[T any](st *status.Status) bool {
	for _, d := range st.Details() {
		if _, ok := d.(T); ok {
			return true
		}
	}
	return false
}
