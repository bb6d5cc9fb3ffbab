package router

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/internal/syskeys"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// Unit tests of Watch against scripted streams of fake nodes
// (fakeWatch): the merge across shards, resubscription, splits, errors,
// flow control and shutdown.

// collect reads responses from ch until it has n events, and returns
// them as "key@rev" strings in delivery order. It fails the test on an
// Err, a closed channel or after 10s.
func collect(t *testing.T, ch <-chan WatchResponse, n int) []string {
	t.Helper()
	var got []string
	timeout := time.After(10 * time.Second)
	for len(got) < n {
		select {
		case resp, ok := <-ch:
			if !ok {
				t.Fatalf("watch closed after %v", got)
			}
			if resp.Err != nil {
				t.Fatalf("watch failed after %v: %v", got, resp.Err)
			}
			for _, ev := range resp.Events {
				got = append(got, fmt.Sprintf("%s@%d", ev.KV.Key, ev.Revision()))
				if ev.Revision() > resp.ProgressRevision {
					t.Errorf("event %s@%d in a response whose progress is %d", ev.KV.Key, ev.Revision(), resp.ProgressRevision)
				}
			}
		case <-timeout:
			t.Fatalf("after %v: timed out waiting for %d events", got, n)
		}
	}
	return got
}

// lastErr drains ch until it closes and returns the last Err.
func lastErr(t *testing.T, ch <-chan WatchResponse) error {
	t.Helper()
	var err error
	timeout := time.After(10 * time.Second)
	for {
		select {
		case resp, ok := <-ch:
			if !ok {
				return err
			}
			if resp.Err != nil {
				err = resp.Err
			}
		case <-timeout:
			t.Fatal("watch did not end")
		}
	}
}

func twoShards(t *testing.T) (*fakeNode, *fakeNode, *Client) {
	n1, n2 := newFakeNode(t, 1), newFakeNode(t, 2)
	n1.watches, n2.watches = make(chan *fakeWatch, 8), make(chan *fakeWatch, 8)
	c := newTestClient(t, newStaticSource(fakeRoute(1, "", "m", 1, n1), fakeRoute(2, "m", "", 2, n2)), nil)
	return n1, n2, c
}

func TestWatchMergesShardsInRevisionOrder(t *testing.T) {
	n1, n2, c := twoShards(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := c.Watch(ctx, nil, nil, WithProgressNotify(time.Nanosecond))
	w1, w2 := n1.nextWatch(t), n2.nextWatch(t)
	if w1.req.GetStartRevision() != 0 || string(w1.req.GetEnd()) != "m" || w1.req.GetProgressIntervalMs() != 10 {
		t.Fatalf("first stream: %v, want shard 1 ([, m)) from now, progress every 10ms", w1.req)
	}
	if w2.req.GetStartRevision() != 0 || string(w2.req.GetStart()) != "m" || w2.req.GetHeader().GetShardId() != 2 {
		t.Fatalf("second stream: %v, want shard 2 from now", w2.req)
	}
	// Each shard's "now" differs: the watch starts at the latest, 10.
	w1.created(10)
	w2.created(8)
	w2.progress(9, putEvent("before", 8), putEvent("before", 9))
	if resp := <-ch; resp.ProgressRevision != 9 || len(resp.Events) != 0 {
		t.Fatalf("first response %+v, want progress 9 (the start was 10) and no event before it", resp)
	}
	// Shard 1 runs ahead; shard 2's events in between must come first.
	w1.progress(12, putEvent("a", 12))
	w1.progress(20, putEvent("b", 15))
	w2.progress(11)
	w2.progress(14, putEvent("n", 13), putEvent("o", 14))
	got := collect(t, ch, 3)
	if want := "a@12 n@13 o@14"; strings.Join(got, " ") != want {
		t.Fatalf("delivered %v, want %s (b@15 must wait for shard 2's progress)", got, want)
	}
	w2.progress(30)
	// b@15 comes with the watch's progress: the least of the shards'
	// (20, shard 1's).
	resp := <-ch
	if len(resp.Events) != 1 || string(resp.Events[0].KV.Key) != "b" || resp.ProgressRevision != 20 {
		t.Fatalf("then %+v, want b@15 with progress 20", resp)
	}
	w1.progress(25)
	if resp := <-ch; len(resp.Events) != 0 || resp.ProgressRevision != 25 {
		t.Fatalf("then %+v, want progress 25", resp)
	}
}

func TestWatchResubscribesWithoutDuplicates(t *testing.T) {
	n1, n2 := newFakeNode(t, 1), newFakeNode(t, 2)
	n1.watches, n2.watches = make(chan *fakeWatch, 8), make(chan *fakeWatch, 8)
	c := newTestClient(t, newStaticSource(fakeRoute(1, "", "", 1, n1, n2)), nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := c.Watch(ctx, []byte("a"), []byte("z"), WithStartRevision(5), WithMergeInterval(time.Second))
	w := n1.nextWatch(t)
	if w.req.GetStartRevision() != 5 || w.req.GetProgressIntervalMs() != 1000 {
		t.Fatalf("start revision %d, progress interval %dms, want 5 and 1000", w.req.GetStartRevision(), w.req.GetProgressIntervalMs())
	}
	w.created(5)
	w.progress(6, putEvent("b", 5), putEvent("c", 6))
	w.fail(status.Error(codes.Unavailable, "scripted: node stopping"))
	// The leader moves: node 1 is gone, node 2 leads.
	n1.hook = func(string, *pb.RequestHeader) error {
		return withDetail(codes.FailedPrecondition, &pb.NotLeader{ShardId: 1, LeaderReplicaId: 201, LeaderNodeId: 2, LeaderAddress: n2.addr})
	}
	w = n2.nextWatch(t)
	if w.req.GetStartRevision() != 7 {
		t.Fatalf("resubscribed from %d, want 7 (after progress 6)", w.req.GetStartRevision())
	}
	// The new stream replays what was delivered: the watch drops it.
	w.created(7)
	w.progress(8, putEvent("b", 5), putEvent("c", 6), putEvent("d", 7), putEvent("e", 8))
	got := collect(t, ch, 4)
	if want := "b@5 c@6 d@7 e@8"; strings.Join(got, " ") != want {
		t.Fatalf("delivered %v, want %s once each", got, want)
	}
	// An error no resubscription can help ends the watch.
	w.fail(status.Error(codes.Internal, "x"))
	if err := lastErr(t, ch); status.Code(err) != codes.Internal {
		t.Fatalf("Internal from the node ends the watch: %v", err)
	}
}

func TestWatchFollowsSplit(t *testing.T) {
	n1 := newFakeNode(t, 1)
	n1.watches = make(chan *fakeWatch, 8)
	src := newStaticSource(fakeRoute(1, "", "", 1, n1))
	c := newTestClient(t, src, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := c.Watch(ctx, nil, nil, WithStartRevision(3))
	w := n1.nextWatch(t)
	w.created(3)
	w.progress(4, putEvent("b", 3), putEvent("x", 4))
	// Shard 1 splits at "m" into 1 [, m) and 2 [m, ).
	left, right := fakeRoute(1, "", "m", 1, n1), fakeRoute(2, "m", "", 1, n1)
	left.Shard.Epoch.Version, right.Shard.Epoch.Version = 2, 2
	src.set(left, right)
	w.fail(withDetail(codes.FailedPrecondition, &pb.EpochNotMatch{Current: []*pb.Descriptor{left.Shard, right.Shard}}))
	streams := map[uint64]*fakeWatch{}
	for range 2 {
		w := n1.nextWatch(t)
		streams[w.req.GetHeader().GetShardId()] = w
		if w.req.GetStartRevision() != 5 {
			t.Errorf("shard %d resubscribed from %d, want 5", w.req.GetHeader().GetShardId(), w.req.GetStartRevision())
		}
	}
	l, r := streams[1], streams[2]
	// A watch of everything ends where the system span begins.
	if l == nil || r == nil || string(l.req.GetEnd()) != "m" || string(r.req.GetStart()) != "m" || !bytes.Equal(r.req.GetEnd(), syskeys.SystemPrefix) {
		t.Fatalf("after the split: streams %v", streams)
	}
	l.created(5)
	r.created(5)
	l.progress(10, putEvent("c", 6), putEvent("d", 9))
	r.progress(8, putEvent("y", 5), putEvent("z", 8))
	r.progress(12)
	got := collect(t, ch, 6)
	if want := "b@3 x@4 y@5 c@6 z@8 d@9"; strings.Join(got, " ") != want {
		t.Fatalf("delivered %v, want %s", got, want)
	}
}

func TestWatchCompactedEndsTheWatch(t *testing.T) {
	n1, n2, c := twoShards(t)
	ch := c.Watch(context.Background(), nil, nil, WithStartRevision(2))
	ws := []*fakeWatch{n1.nextWatch(t), n2.nextWatch(t)}
	ws[0].created(2)
	ws[1].fail(withDetail(codes.OutOfRange, &pb.Compacted{ShardId: 2, CompactRevision: 40}))
	err := lastErr(t, ch)
	var ce *CompactedError
	if !errors.As(err, &ce) || ce.CompactRevision != 40 || ce.ShardID != 2 || status.Code(err) != codes.OutOfRange {
		t.Fatalf("watch ended with %v, want *CompactedError{2, 40}", err)
	}
}

func TestWatchStopsOnCancelAndClose(t *testing.T) {
	n1, _, c := twoShards(t)
	ctx, cancel := context.WithCancel(context.Background())
	ch := c.Watch(ctx, nil, []byte("c"))
	n1.nextWatch(t).created(1)
	cancel()
	if err := lastErr(t, ch); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled watch ended with %v", err)
	}
	ch = c.Watch(context.Background(), []byte("a"), []byte("b"))
	n1.nextWatch(t)
	c.Close()
	if err := lastErr(t, ch); !errors.Is(err, ErrClosed) {
		t.Errorf("watch ended by Close with %v", err)
	}
	if err := lastErr(t, c.Watch(context.Background(), nil, nil)); !errors.Is(err, ErrClosed) {
		t.Errorf("watch after Close: %v", err)
	}
	if err := lastErr(t, c.Watch(context.Background(), []byte("b"), []byte("a"))); status.Code(err) != codes.InvalidArgument {
		t.Errorf("reversed range: %v", err)
	}
}

// TestWatchHoldsBackPiecesAheadWhenPendingIsFull drives the merger
// directly: with more events pending than maxPending, it acks only the
// piece that holds the others back.
func TestWatchHoldsBackPiecesAheadWhenPendingIsFull(t *testing.T) {
	w := &watcher{o: watchOptions{maxPending: 3, buffer: 100}, out: make(chan WatchResponse, 100), started: true}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	defer w.cancel()
	ahead := &watchPiece{start: []byte("a"), end: []byte("m"), known: true, ack: make(chan struct{}, 1)}
	behind := &watchPiece{start: []byte("m"), known: true, ack: make(chan struct{}, 1)}
	w.pieces = []*watchPiece{ahead, behind}
	acked := func(p *watchPiece) bool {
		select {
		case <-p.ack:
			return true
		default:
			return false
		}
	}
	step := func(m watchMsg) {
		w.handle(m)
		if !w.deliver() {
			t.Fatal("deliver: context ended")
		}
		w.resume()
	}
	step(watchMsg{p: ahead, progress: 2, events: []Event{{KV: KeyValue{Key: []byte("a"), ModRevision: 1}}, {KV: KeyValue{Key: []byte("b"), ModRevision: 2}}}})
	if !acked(ahead) {
		t.Fatal("2 pending of 3: the piece ahead was not acked")
	}
	step(watchMsg{p: ahead, progress: 4, events: []Event{{KV: KeyValue{Key: []byte("c"), ModRevision: 3}}, {KV: KeyValue{Key: []byte("d"), ModRevision: 4}}}})
	if acked(ahead) || !ahead.parked || len(w.pending) != 4 {
		t.Fatalf("4 pending of 3: the piece ahead was acked (parked %v, pending %d)", ahead.parked, len(w.pending))
	}
	step(watchMsg{p: behind, progress: 1})
	if !acked(behind) || acked(ahead) || len(w.out) != 1 {
		t.Fatalf("the lagging piece must be acked, the one ahead not yet (%d responses)", len(w.out))
	}
	step(watchMsg{p: behind, progress: 9})
	if !acked(behind) || !acked(ahead) || len(w.pending) != 0 || len(w.out) != 2 {
		t.Fatalf("after the lagging piece passed: pending %d, responses %d", len(w.pending), len(w.out))
	}
}

func TestWatchGivesUpASilentStream(t *testing.T) {
	defer func(f time.Duration) { watchStallFloor = f }(watchStallFloor)
	watchStallFloor = 200 * time.Millisecond
	n1, n2 := newFakeNode(t, 1), newFakeNode(t, 2)
	n1.watches, n2.watches = make(chan *fakeWatch, 8), make(chan *fakeWatch, 8)
	c := newTestClient(t, newStaticSource(fakeRoute(1, "", "", 1, n1, n2)), nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := c.Watch(ctx, nil, nil, WithStartRevision(3), WithMergeInterval(10*time.Millisecond))
	w := n1.nextWatch(t)
	w.created(3)
	w.progress(4, putEvent("a", 4))
	// Node 1 now sends nothing, as a paused node would: after 200ms the
	// watch moves to node 2, from where node 1 left off.
	w = n2.nextWatch(t)
	if w.req.GetStartRevision() != 5 {
		t.Fatalf("resubscribed at node 2 from %d, want 5", w.req.GetStartRevision())
	}
	w.created(5)
	w.progress(6, putEvent("b", 6))
	if got := collect(t, ch, 2); strings.Join(got, " ") != "a@4 b@6" {
		t.Fatalf("delivered %v", got)
	}
}
