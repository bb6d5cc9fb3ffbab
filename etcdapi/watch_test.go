package etcdapi

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/flotilla-kv/flotilla/router"
)

// watchWait bounds every wait of these tests for something to arrive.
const watchWait = 20 * time.Second

// checkWatchLeaks fails t if goroutines it started outlive it (every
// cleanup, the fleet's and the server's included, has run by then).
// Called first, so its cleanup runs last.
func checkWatchLeaks(t *testing.T) {
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

// put writes key=value through the router and returns its revision.
func put(t *testing.T, a *testAPI, key, value string) int64 {
	t.Helper()
	res, err := a.router.PutRev(testCtx(t), []byte(key), []byte(value))
	if err != nil {
		t.Fatalf("put %q: %v", key, err)
	}
	return int64(res.Revision)
}

// del deletes key through the router and returns its revision.
func del(t *testing.T, a *testAPI, key string) int64 {
	t.Helper()
	res, err := a.router.DeleteRev(testCtx(t), []byte(key))
	if err != nil {
		t.Fatalf("delete %q: %v", key, err)
	}
	return int64(res.Revision)
}

// events collects the events of wch until there are n, failing t if the
// channel closes or watchWait passes first.
func events(t *testing.T, wch clientv3.WatchChan, n int) []*clientv3.Event {
	t.Helper()
	var out []*clientv3.Event
	deadline := time.After(watchWait)
	for len(out) < n {
		select {
		case resp, ok := <-wch:
			if !ok {
				t.Fatalf("watch channel closed after %d of %d events", len(out), n)
			}
			if err := resp.Err(); err != nil {
				t.Fatalf("watch failed after %d of %d events: %v", len(out), n, err)
			}
			checkHeader(t, &resp.Header)
			out = append(out, resp.Events...)
		case <-deadline:
			t.Fatalf("got %d of %d events in %s: %v", len(out), n, watchWait, out)
		}
	}
	return out
}

// checkHeader checks the IDs startAPI gave the server.
func checkHeader(t *testing.T, h *pb.ResponseHeader) {
	t.Helper()
	if h.GetClusterId() != 0x10 || h.GetMemberId() != 1 {
		t.Fatalf("header %v: want cluster 0x10, member 1", h)
	}
}

// wantEvent checks one event.
func wantEvent(t *testing.T, ev *clientv3.Event, typ mvccpb.Event_EventType, key, value string, rev int64) {
	t.Helper()
	if ev.Type != typ || string(ev.Kv.Key) != key || string(ev.Kv.Value) != value || ev.Kv.ModRevision != rev {
		t.Fatalf("event %s %q=%q at %d; want %s %q=%q at %d", ev.Type, ev.Kv.Key, ev.Kv.Value, ev.Kv.ModRevision, typ, key, value, rev)
	}
}

// quiet checks that wch delivers no event for a moment (a negative check:
// a short wait cannot prove absence, but catches the likely bugs).
func quiet(t *testing.T, wch clientv3.WatchChan) {
	t.Helper()
	select {
	case resp := <-wch:
		if len(resp.Events) > 0 {
			t.Fatalf("unexpected events %v", resp.Events)
		}
	case <-time.After(300 * time.Millisecond):
	}
}

// rawWatch is a Watch stream of the API without clientv3, to see the
// responses as they are sent.
type rawWatch struct {
	s     pb.Watch_WatchClient
	resps chan *pb.WatchResponse
}

// newRawWatch opens a raw stream to addr, closed when the test ends.
func newRawWatch(t *testing.T, addr string) *rawWatch {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := pb.NewWatchClient(conn).Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r := &rawWatch{s: s, resps: make(chan *pb.WatchResponse, 1000)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(r.resps)
		for {
			resp, err := s.Recv()
			if err != nil {
				return
			}
			r.resps <- resp
		}
	}()
	t.Cleanup(func() { cancel(); <-done; _ = conn.Close() })
	return r
}

func (r *rawWatch) send(t *testing.T, req *pb.WatchRequest) {
	t.Helper()
	if err := r.s.Send(req); err != nil {
		t.Fatal(err)
	}
}

func (r *rawWatch) create(t *testing.T, c *pb.WatchCreateRequest) {
	t.Helper()
	r.send(t, &pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: c}})
}

// next returns the next response, failing t after watchWait.
func (r *rawWatch) next(t *testing.T) *pb.WatchResponse {
	t.Helper()
	select {
	case resp, ok := <-r.resps:
		if !ok {
			t.Fatal("raw watch stream ended")
		}
		checkHeader(t, resp.GetHeader())
		return resp
	case <-time.After(watchWait):
		t.Fatalf("no watch response in %s", watchWait)
	}
	return nil
}

// serveWatch serves ws alone on another loopback port, and returns a
// clientv3 of it and the address.
func serveWatch(t *testing.T, ws *watchServer) (*clientv3.Client, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	pb.RegisterWatchServer(g, ws)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{lis.Addr().String()}, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, lis.Addr().String()
}

// serverWatching reports whether a goroutine of a watch stream is
// running in this process.
func serverWatching(t *testing.T) bool {
	t.Helper()
	return stackHas("etcdapi.(*watchStream)")
}

// stackHas reports whether a goroutine's stack has s in it.
func stackHas(s string) bool {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return bytes.Contains(buf[:n], []byte(s))
		}
		buf = make([]byte, 2*len(buf))
	}
}

// TestWatch runs the Watch service's cases against one fleet, one after
// the other (each on its own keys).
func TestWatch(t *testing.T) {
	checkWatchLeaks(t)
	a := startAPI(t)

	t.Run("OneKey", func(t *testing.T) {
		ctx := testCtx(t)
		wch := a.client.Watch(ctx, "one/k")
		r1 := put(t, a, "one/k", "v1")
		put(t, a, "one/k2", "other")
		put(t, a, "one/", "other")
		r2 := put(t, a, "one/k", "v2")
		r3 := del(t, a, "one/k")
		evs := events(t, wch, 3)
		wantEvent(t, evs[0], mvccpb.PUT, "one/k", "v1", r1)
		wantEvent(t, evs[1], mvccpb.PUT, "one/k", "v2", r2)
		wantEvent(t, evs[2], mvccpb.DELETE, "one/k", "", r3)
		if kv := evs[0].Kv; kv.CreateRevision != r1 || kv.Version != 1 || !evs[0].IsCreate() {
			t.Fatalf("first put: %v; want create revision %d, version 1", kv, r1)
		}
		if kv := evs[1].Kv; kv.CreateRevision != r1 || kv.Version != 2 || !evs[1].IsModify() {
			t.Fatalf("second put: %v; want create revision %d, version 2", kv, r1)
		}
		quiet(t, wch)
	})

	t.Run("Prefix", func(t *testing.T) {
		ctx := testCtx(t)
		wch := a.client.Watch(ctx, "pre/", clientv3.WithPrefix())
		put(t, a, "pre", "outside")
		r1 := put(t, a, "pre/a", "1")
		put(t, a, "pre0", "outside")
		r2 := put(t, a, "pre/b/c", "2")
		evs := events(t, wch, 2)
		wantEvent(t, evs[0], mvccpb.PUT, "pre/a", "1", r1)
		wantEvent(t, evs[1], mvccpb.PUT, "pre/b/c", "2", r2)
		quiet(t, wch)
	})

	t.Run("Range", func(t *testing.T) {
		ctx := testCtx(t)
		wch := a.client.Watch(ctx, "rng/b", clientv3.WithRange("rng/d"))
		put(t, a, "rng/a", "outside")
		r1 := put(t, a, "rng/b", "1")
		r2 := put(t, a, "rng/c9", "2")
		put(t, a, "rng/d", "outside")
		evs := events(t, wch, 2)
		wantEvent(t, evs[0], mvccpb.PUT, "rng/b", "1", r1)
		wantEvent(t, evs[1], mvccpb.PUT, "rng/c9", "2", r2)
		quiet(t, wch)
	})

	t.Run("FromKey", func(t *testing.T) {
		ctx := testCtx(t)
		wch := a.client.Watch(ctx, "zz/m", clientv3.WithFromKey())
		put(t, a, "zz/a", "below")
		r1 := put(t, a, "zz/m", "1")
		r2 := put(t, a, "zzz", "2")
		evs := events(t, wch, 2)
		wantEvent(t, evs[0], mvccpb.PUT, "zz/m", "1", r1)
		wantEvent(t, evs[1], mvccpb.PUT, "zzz", "2", r2)
	})

	t.Run("History", func(t *testing.T) {
		ctx := testCtx(t)
		r1 := put(t, a, "hist/k", "1")
		r2 := put(t, a, "hist/k", "2")
		r3 := del(t, a, "hist/k")
		wch := a.client.Watch(ctx, "hist/k", clientv3.WithRev(r1))
		r4 := put(t, a, "hist/k", "4")
		evs := events(t, wch, 4)
		wantEvent(t, evs[0], mvccpb.PUT, "hist/k", "1", r1)
		wantEvent(t, evs[1], mvccpb.PUT, "hist/k", "2", r2)
		wantEvent(t, evs[2], mvccpb.DELETE, "hist/k", "", r3)
		wantEvent(t, evs[3], mvccpb.PUT, "hist/k", "4", r4)
		if evs[3].Kv.Version != 1 || evs[3].Kv.CreateRevision != r4 {
			t.Fatalf("put after delete: %v; want version 1, create revision %d", evs[3].Kv, r4)
		}
		// From the middle of the history.
		wch = a.client.Watch(ctx, "hist/k", clientv3.WithRev(r2))
		evs = events(t, wch, 3)
		wantEvent(t, evs[0], mvccpb.PUT, "hist/k", "2", r2)
		wantEvent(t, evs[2], mvccpb.PUT, "hist/k", "4", r4)
	})

	t.Run("PrevKV", func(t *testing.T) {
		ctx := testCtx(t)
		put(t, a, "prev/k", "old")
		wch := a.client.Watch(ctx, "prev/", clientv3.WithPrefix(), clientv3.WithPrevKV())
		r1 := put(t, a, "prev/k", "new")
		r2 := del(t, a, "prev/k")
		r3 := put(t, a, "prev/fresh", "x")
		evs := events(t, wch, 3)
		wantEvent(t, evs[0], mvccpb.PUT, "prev/k", "new", r1)
		if p := evs[0].PrevKv; p == nil || string(p.Value) != "old" || p.Version != 1 {
			t.Fatalf("put's prev_kv %v; want old, version 1", p)
		}
		wantEvent(t, evs[1], mvccpb.DELETE, "prev/k", "", r2)
		if p := evs[1].PrevKv; p == nil || string(p.Value) != "new" || p.ModRevision != r1 {
			t.Fatalf("delete's prev_kv %v; want new at %d", p, r1)
		}
		wantEvent(t, evs[2], mvccpb.PUT, "prev/fresh", "x", r3)
		if evs[2].PrevKv != nil {
			t.Fatalf("a created key's prev_kv %v; want none", evs[2].PrevKv)
		}
	})

	t.Run("Filters", func(t *testing.T) {
		ctx := testCtx(t)
		noPut := a.client.Watch(ctx, "filt/", clientv3.WithPrefix(), clientv3.WithFilterPut())
		noDel := a.client.Watch(ctx, "filt/", clientv3.WithPrefix(), clientv3.WithFilterDelete())
		r1 := put(t, a, "filt/a", "1")
		r2 := del(t, a, "filt/a")
		r3 := put(t, a, "filt/b", "2")
		r4 := del(t, a, "filt/b")
		evs := events(t, noPut, 2)
		wantEvent(t, evs[0], mvccpb.DELETE, "filt/a", "", r2)
		wantEvent(t, evs[1], mvccpb.DELETE, "filt/b", "", r4)
		evs = events(t, noDel, 2)
		wantEvent(t, evs[0], mvccpb.PUT, "filt/a", "1", r1)
		wantEvent(t, evs[1], mvccpb.PUT, "filt/b", "2", r3)
		quiet(t, noPut)
		quiet(t, noDel)
	})

	t.Run("Cancel", func(t *testing.T) {
		// clientv3: closing a watch's context closes its channel, the
		// others on the stream go on.
		ctx := testCtx(t)
		cctx, cancel := context.WithCancel(ctx)
		gone := a.client.Watch(cctx, "can/a")
		kept := a.client.Watch(ctx, "can/b")
		cancel()
		deadline := time.After(watchWait)
		for open := true; open; {
			select {
			case _, open = <-gone:
			case <-deadline:
				t.Fatal("canceled watch's channel still open")
			}
		}
		r := put(t, a, "can/b", "1")
		wantEvent(t, events(t, kept, 1)[0], mvccpb.PUT, "can/b", "1", r)

		// The raw protocol: a canceled response, then nothing for it.
		raw := newRawWatch(t, a.addr)
		raw.create(t, &pb.WatchCreateRequest{Key: []byte("can/c")})
		created := raw.next(t)
		if !created.Created || created.Canceled {
			t.Fatalf("create: %v", created)
		}
		raw.send(t, &pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{CancelRequest: &pb.WatchCancelRequest{WatchId: created.WatchId}}})
		if resp := raw.next(t); !resp.Canceled || resp.WatchId != created.WatchId || resp.CancelReason != "" || resp.CompactRevision != 0 {
			t.Fatalf("cancel: %v", resp)
		}
		put(t, a, "can/c", "after")
		// A cancel of an unknown ID is ignored; the next create still
		// works, and nothing of the canceled watch arrives before it.
		raw.send(t, &pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{CancelRequest: &pb.WatchCancelRequest{WatchId: 12345}}})
		raw.create(t, &pb.WatchCreateRequest{Key: []byte("can/d")})
		if resp := raw.next(t); !resp.Created || resp.Canceled {
			t.Fatalf("create after cancel: %v", resp)
		}
	})

	t.Run("IDs", func(t *testing.T) {
		raw := newRawWatch(t, a.addr)
		raw.create(t, &pb.WatchCreateRequest{Key: []byte("ids/a")})
		raw.create(t, &pb.WatchCreateRequest{Key: []byte("ids/b"), WatchId: 7})
		raw.create(t, &pb.WatchCreateRequest{Key: []byte("ids/c"), WatchId: 7})
		raw.create(t, &pb.WatchCreateRequest{Key: []byte("ids/d")})
		raw.create(t, &pb.WatchCreateRequest{Key: []byte("ids/e"), RangeEnd: []byte("ids/a")})
		// Created responses come in the order of the requests.
		for i, want := range []int64{0, 7, -1, 1, -1} {
			resp := raw.next(t)
			if !resp.Created || resp.WatchId != want || resp.Canceled != (want == -1) {
				t.Fatalf("create %d: %v; want created, ID %d", i, resp, want)
			}
			switch i {
			case 2:
				if resp.CancelReason != errWatcherDuplicateID.Error() {
					t.Fatalf("duplicate ID: reason %q", resp.CancelReason)
				}
			case 4:
				if resp.CancelReason != errEmptyWatcherRange.Error() {
					t.Fatalf("empty range: reason %q", resp.CancelReason)
				}
			}
		}
		// Each watcher gets its own key's events under its ID.
		rb := put(t, a, "ids/b", "b")
		rd := put(t, a, "ids/d", "d")
		got := map[int64]int64{}
		for len(got) < 2 {
			resp := raw.next(t)
			if len(resp.Events) != 1 {
				t.Fatalf("unexpected response %v", resp)
			}
			if resp.Header.Revision < resp.Events[0].Kv.ModRevision {
				t.Fatalf("header revision %d below the event's %d", resp.Header.Revision, resp.Events[0].Kv.ModRevision)
			}
			got[resp.WatchId] = resp.Events[0].Kv.ModRevision
		}
		if got[7] != rb || got[1] != rd {
			t.Fatalf("events by watch ID %v; want 7: %d, 1: %d", got, rb, rd)
		}
	})

	t.Run("ManyWatchersOneStream", func(t *testing.T) {
		ctx := testCtx(t)
		const n = 8
		chans := make([]clientv3.WatchChan, n)
		for i := range chans {
			chans[i] = a.client.Watch(ctx, fmt.Sprintf("many/%d", i))
		}
		all := a.client.Watch(ctx, "many/", clientv3.WithPrefix())
		revs := make([]int64, n)
		for i := range revs {
			revs[i] = put(t, a, fmt.Sprintf("many/%d", i), fmt.Sprint(i))
		}
		for i, wch := range chans {
			wantEvent(t, events(t, wch, 1)[0], mvccpb.PUT, fmt.Sprintf("many/%d", i), fmt.Sprint(i), revs[i])
		}
		evs := events(t, all, n)
		for i, ev := range evs {
			wantEvent(t, ev, mvccpb.PUT, fmt.Sprintf("many/%d", i), fmt.Sprint(i), revs[i])
		}
	})

	t.Run("CreatedRevision", func(t *testing.T) {
		// A watch from now: every write acknowledged before the create is
		// at or below the created header revision, every one after is
		// delivered.
		raw := newRawWatch(t, a.addr)
		before := put(t, a, "crev/k", "before")
		raw.create(t, &pb.WatchCreateRequest{Key: []byte("crev/k")})
		created := raw.next(t)
		if !created.Created || created.Header.Revision < before {
			t.Fatalf("created %v; want header revision at least %d", created, before)
		}
		after := put(t, a, "crev/k", "after")
		resp := raw.next(t)
		if len(resp.Events) != 1 || resp.Events[0].Kv.ModRevision != after {
			t.Fatalf("after create: %v; want the put at %d", resp, after)
		}
	})

	t.Run("StreamEnd", func(t *testing.T) {
		// The end of a stream ends its watchers and their router watches.
		conn, err := grpc.NewClient(a.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithCancel(testCtx(t))
		s, err := pb.NewWatchClient(conn).Watch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		old := put(t, a, "end/k", "v")
		for _, c := range []*pb.WatchCreateRequest{
			{Key: []byte("end/"), RangeEnd: []byte("end0")},
			{Key: []byte("end/k"), StartRevision: old},
			{Key: []byte("\x10"), RangeEnd: []byte("\xe0"), ProgressNotify: true},
		} {
			if err := s.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: c}}); err != nil {
				t.Fatal(err)
			}
			for created := false; !created; {
				resp, err := s.Recv()
				if err != nil || resp.Canceled {
					t.Fatalf("create: %v, %v", resp, err)
				}
				created = resp.Created
			}
		}
		if !serverWatching(t) {
			t.Fatal("no watch goroutines while the stream is open")
		}
		cancel()
		deadline := time.Now().Add(watchWait)
		for serverWatching(t) {
			if time.Now().After(deadline) {
				t.Fatalf("watch goroutines still running %s after the stream ended", watchWait)
			}
			time.Sleep(20 * time.Millisecond) // polling the condition
		}
	})

	t.Run("SlowClient", func(t *testing.T) {
		// A client that does not read: the stream's writer blocks in
		// Send, the watcher in handing over (so it stops reading its
		// router watch, which then stops reading the shards); once the
		// client reads, every event arrives, in order.
		// Not newRawWatch, which reads into a buffer.
		conn, err := grpc.NewClient(a.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		s, err := pb.NewWatchClient(conn).Watch(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{Key: []byte("slow/"), RangeEnd: []byte("slow0")}}}); err != nil {
			t.Fatal(err)
		}
		if resp, err := s.Recv(); err != nil || !resp.Created {
			t.Fatalf("create: %v, %v", resp, err)
		}
		value := strings.Repeat("s", 128<<10)
		var revs []int64
		deadline := time.Now().Add(watchWait)
		for !stackHas("etcdapi.(*watchStream).push(") {
			if time.Now().After(deadline) || len(revs) >= 400 {
				t.Fatalf("no watcher blocked after %d writes of %d bytes", len(revs), len(value))
			}
			revs = append(revs, put(t, a, fmt.Sprintf("slow/%04d", len(revs)), value))
		}
		t.Logf("a watcher blocked after %d writes of %d bytes", len(revs), len(value))
		for i := 0; i < len(revs); {
			resp, err := s.Recv()
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range resp.Events {
				if ev.Kv.ModRevision != revs[i] || len(ev.Kv.Value) != len(value) {
					t.Fatalf("event %d at %d; want %d", i, ev.Kv.ModRevision, revs[i])
				}
				i++
			}
		}
	})

	t.Run("RequestProgress", func(t *testing.T) {
		testRequestProgress(t, a)
	})

	t.Run("ProgressNotify", func(t *testing.T) {
		c, _ := serveWatch(t, &watchServer{s: a.server, progressInterval: 300 * time.Millisecond})
		ctx := testCtx(t)
		wch := c.Watch(ctx, "pn/k", clientv3.WithProgressNotify())
		r1 := put(t, a, "pn/k", "1")
		wantEvent(t, events(t, wch, 1)[0], mvccpb.PUT, "pn/k", "1", r1)
		// Idle: progress notifications, at or above the event's revision.
		deadline := time.After(watchWait)
		for notes := 0; notes < 2; {
			select {
			case resp := <-wch:
				if !resp.IsProgressNotify() {
					t.Fatalf("want a progress notification, got %+v", resp)
				}
				checkHeader(t, &resp.Header)
				if resp.Header.Revision < r1 {
					t.Fatalf("progress at %d, below the event at %d", resp.Header.Revision, r1)
				}
				notes++
			case <-deadline:
				t.Fatal("no progress notifications")
			}
		}
		// Without progress_notify, none.
		plain := c.Watch(ctx, "pn/other")
		quiet(t, plain)
	})

	t.Run("Fragment", func(t *testing.T) {
		// A watch replaying 40 writes gets them in one router response,
		// which fragment splits at 1000 bytes.
		const limit = 1000
		_, addr := serveWatch(t, &watchServer{s: a.server, fragmentBytes: limit})
		var revs []int64
		for i := range 40 {
			revs = append(revs, put(t, a, fmt.Sprintf("frag/%02d", i), strings.Repeat("v", 100)))
		}
		raw := newRawWatch(t, addr)
		raw.create(t, &pb.WatchCreateRequest{Key: []byte("frag/"), RangeEnd: []byte("frag0"), StartRevision: revs[0], Fragment: true})
		if resp := raw.next(t); !resp.Created {
			t.Fatalf("create: %v", resp)
		}
		var got []*mvccpb.Event
		fragments := 0
		for len(got) < len(revs) {
			resp := raw.next(t)
			if resp.Size() > limit && len(resp.Events) > 1 {
				t.Fatalf("a response of %d bytes, %d events", resp.Size(), len(resp.Events))
			}
			if resp.Fragment {
				fragments++
			}
			got = append(got, resp.Events...)
			if len(got) == len(revs) && resp.Fragment {
				t.Fatal("the last response of the events says more fragments follow")
			}
		}
		if fragments == 0 {
			t.Fatal("no fragmented response")
		}
		for i, ev := range got {
			if ev.Kv.ModRevision != revs[i] {
				t.Fatalf("event %d at %d; want %d", i, ev.Kv.ModRevision, revs[i])
			}
		}
		// clientv3 puts the fragments back together.
		c, _ := serveWatch(t, &watchServer{s: a.server, fragmentBytes: limit})
		wch := c.Watch(testCtx(t), "frag/", clientv3.WithPrefix(), clientv3.WithRev(revs[0]), clientv3.WithFragment())
		for i, ev := range events(t, wch, len(revs)) {
			if ev.Kv.ModRevision != revs[i] {
				t.Fatalf("clientv3: event %d at %d; want %d", i, ev.Kv.ModRevision, revs[i])
			}
		}
	})

	t.Run("MultiKeyWrite", func(t *testing.T) {
		ctx := testCtx(t)
		wch := a.client.Watch(ctx, "multi/", clientv3.WithPrefix())
		ops := make([]router.Op, 5)
		for i := range ops {
			ops[i] = router.Op{Key: fmt.Appendf(nil, "multi/%d", i), Value: []byte("v")}
		}
		res, err := a.router.BatchRev(ctx, ops)
		if err != nil {
			t.Fatal(err)
		}
		for i, ev := range events(t, wch, len(ops)) {
			wantEvent(t, ev, mvccpb.PUT, string(ops[i].Key), "v", int64(res.Revision))
		}
		// Replayed from history, and a range delete through etcd's API:
		// every key of each write.
		del, err := a.client.Delete(ctx, "multi/", clientv3.WithPrefix())
		if err != nil || del.Deleted != int64(len(ops)) {
			t.Fatalf("delete: %v %v", del, err)
		}
		for i, ev := range events(t, wch, len(ops)) {
			wantEvent(t, ev, mvccpb.DELETE, string(ops[i].Key), "", del.Header.Revision)
		}
		replay := a.client.Watch(ctx, "multi/", clientv3.WithPrefix(), clientv3.WithRev(int64(res.Revision)))
		for i, ev := range events(t, replay, 2*len(ops)) {
			if i < len(ops) {
				wantEvent(t, ev, mvccpb.PUT, string(ops[i].Key), "v", int64(res.Revision))
			} else {
				wantEvent(t, ev, mvccpb.DELETE, string(ops[i-len(ops)].Key), "", del.Header.Revision)
			}
		}
	})

	t.Run("AcrossShards", func(t *testing.T) {
		testAcrossShards(t, a)
	})

	// Last: compaction is per shard, and this compacts the shard of the
	// keys above 0xC0.
	t.Run("Compacted", func(t *testing.T) {
		ctx := testCtx(t)
		r1 := put(t, a, "\xe0cmp/k", "1")
		r2 := put(t, a, "\xe0cmp/k", "2")
		if err := a.router.Compact(ctx, []byte("\xe0cmp/"), []byte("\xe0cmp0"), uint64(r2)); err != nil {
			t.Fatal(err)
		}
		wch := a.client.Watch(ctx, "\xe0cmp/k", clientv3.WithRev(r1))
		select {
		case resp, ok := <-wch:
			if !ok {
				t.Fatal("channel closed without the compaction")
			}
			if resp.Err() != rpctypes.ErrCompacted || !resp.Canceled || resp.CompactRevision != r2 {
				t.Fatalf("watch from %d after compacting to %d: %+v, err %v", r1, r2, resp, resp.Err())
			}
		case <-time.After(watchWait):
			t.Fatal("no compaction response")
		}
		// From the compaction revision on, it works.
		wch = a.client.Watch(ctx, "\xe0cmp/k", clientv3.WithRev(r2))
		wantEvent(t, events(t, wch, 1)[0], mvccpb.PUT, "\xe0cmp/k", "2", r2)
		// A negative start revision is refused at creation.
		raw := newRawWatch(t, a.addr)
		raw.create(t, &pb.WatchCreateRequest{Key: []byte("x"), StartRevision: -1})
		if resp := raw.next(t); !resp.Created || !resp.Canceled || resp.WatchId != -1 || resp.CancelReason != rpctypes.ErrCompacted.Error() {
			t.Fatalf("negative start revision: %v", resp)
		}
	})
}

// testRequestProgress checks RequestProgress the way the Kubernetes
// watch cache uses it: after a progress response at R, no watcher of the
// stream delivers an event at or below R, and every event at or below R
// came before it; and R catches up with the writes.
func testRequestProgress(t *testing.T, a *testAPI) {
	ctx := testCtx(t)
	old := put(t, a, "rp/b", "0")
	fromNow := a.client.Watch(ctx, "rp/a")
	// This one replays history first.
	replay := a.client.Watch(ctx, "rp/b", clientv3.WithRev(old))

	var mu sync.Mutex
	var acked []int64
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; wctx.Err() == nil; i++ {
			key := []byte("rp/a")
			if i%2 == 1 {
				key = []byte("rp/b")
			}
			res, err := a.router.PutRev(wctx, key, fmt.Append(nil, i))
			if err != nil {
				return
			}
			mu.Lock()
			acked = append(acked, int64(res.Revision))
			mu.Unlock()
		}
	}()
	// Each channel: the highest event revision seen, and the progress
	// responses' revisions; check the rule as responses arrive.
	type state struct{ lastEvent, lastProgress int64 }
	states := map[string]*state{"a": {}, "b": {}}
	seen := map[int64]bool{}
	check := func(name string, resp clientv3.WatchResponse) {
		t.Helper()
		s := states[name]
		if err := resp.Err(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		checkHeader(t, &resp.Header)
		if resp.IsProgressNotify() {
			if resp.Header.Revision < s.lastEvent {
				t.Fatalf("%s: progress %d below an event delivered at %d", name, resp.Header.Revision, s.lastEvent)
			}
			s.lastProgress = max(s.lastProgress, resp.Header.Revision)
			return
		}
		for _, ev := range resp.Events {
			seen[ev.Kv.ModRevision] = true
			if ev.Kv.ModRevision <= s.lastProgress {
				t.Fatalf("%s: event at %d after a progress response at %d", name, ev.Kv.ModRevision, s.lastProgress)
			}
			s.lastEvent = ev.Kv.ModRevision
		}
	}
	deadline := time.Now().Add(watchWait)
	requests := 0
	for requests < 30 || ackedCount(&mu, &acked) < 30 {
		if time.Now().After(deadline) {
			t.Fatalf("%d progress requests in %s", requests, watchWait)
		}
		if err := a.client.RequestProgress(ctx); err != nil {
			t.Fatal(err)
		}
		requests++
		// Read until both channels had a progress response to it.
		got := map[string]bool{}
		for len(got) < 2 {
			select {
			case resp := <-fromNow:
				check("a", resp)
				if resp.IsProgressNotify() {
					got["a"] = true
				}
			case resp := <-replay:
				check("b", resp)
				if resp.IsProgressNotify() {
					got["b"] = true
				}
			case <-time.After(watchWait):
				t.Fatal("no progress response")
			}
		}
	}
	stop()
	wg.Wait()
	t.Logf("%d progress requests answered under %d writes", requests, len(acked))
	// The progress catches up: a progress response at or above the last
	// acknowledged write arrives, every event of the writes came before it.
	mu.Lock()
	defer mu.Unlock()
	if len(acked) == 0 {
		t.Fatal("no write acknowledged")
	}
	last := acked[len(acked)-1]
	for states["a"].lastProgress < last || states["b"].lastProgress < last {
		if time.Now().After(deadline) {
			t.Fatalf("progress %d, %d not at the last write %d", states["a"].lastProgress, states["b"].lastProgress, last)
		}
		if err := a.client.RequestProgress(ctx); err != nil {
			t.Fatal(err)
		}
		drained := false
		for !drained {
			select {
			case resp := <-fromNow:
				check("a", resp)
			case resp := <-replay:
				check("b", resp)
			case <-time.After(200 * time.Millisecond):
				drained = true
			}
		}
	}
	for _, r := range acked {
		if !seen[r] {
			t.Fatalf("write at %d, below the progress, never delivered", r)
		}
	}
}

// ackedCount returns len(*acked) under mu.
func ackedCount(mu *sync.Mutex, acked *[]int64) int {
	mu.Lock()
	defer mu.Unlock()
	return len(*acked)
}

// testAcrossShards watches a range over all four shards while writers
// write to each, and checks that every write arrives once, in revision
// order.
func testAcrossShards(t *testing.T, a *testAPI) {
	ctx := testCtx(t)
	// The four first bytes fall in the four initial shards.
	keys := []string{"\x10xs", "\x50xs", "\x90xs", "\xd0xs"}
	wch := a.client.Watch(ctx, "\x10", clientv3.WithRange("\xe0"))
	const perKey = 25
	revs := make(chan int64, len(keys)*perKey)
	var wg sync.WaitGroup
	for _, k := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perKey {
				res, err := a.router.PutRev(ctx, []byte(k), fmt.Append(nil, i))
				if err != nil {
					t.Errorf("put %q: %v", k, err)
					return
				}
				revs <- int64(res.Revision)
			}
		}()
	}
	wg.Wait()
	close(revs)
	if t.Failed() {
		return
	}
	want := map[int64]bool{}
	for r := range revs {
		want[r] = true
	}
	evs := events(t, wch, len(want))
	shards := map[byte]bool{}
	for i, ev := range evs {
		if i > 0 && ev.Kv.ModRevision <= evs[i-1].Kv.ModRevision {
			t.Fatalf("event %d at %d after one at %d", i, ev.Kv.ModRevision, evs[i-1].Kv.ModRevision)
		}
		if !want[ev.Kv.ModRevision] {
			t.Fatalf("event %q at %d: not a write of this test, or twice", ev.Kv.Key, ev.Kv.ModRevision)
		}
		delete(want, ev.Kv.ModRevision)
		shards[ev.Kv.Key[0]] = true
	}
	if len(shards) != len(keys) {
		t.Fatalf("events from %d key ranges; want %d", len(shards), len(keys))
	}
	quiet(t, wch)
}

// TestWatchNodeKill kills and restarts nodes under a watch with writes
// going on: no acknowledged write is lost, none is delivered twice, and
// they come in revision order.
func TestWatchNodeKill(t *testing.T) {
	checkWatchLeaks(t)
	a := startAPI(t)
	ctx := testCtx(t)
	// Every key this test writes; the writers' keys spread over the
	// four shards.
	wch := a.client.Watch(ctx, "\x00", clientv3.WithFromKey())

	var mu sync.Mutex
	acked := map[int64]bool{}
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; wctx.Err() == nil; i++ {
				pctx, cancel := context.WithTimeout(wctx, 5*time.Second)
				key := fmt.Appendf(nil, "%ckill/%d", byte(0x10+0x40*w), i)
				res, err := a.router.PutRev(pctx, key, []byte("v"))
				cancel()
				if err != nil {
					continue // ambiguous or failed: may or may not be seen
				}
				mu.Lock()
				acked[int64(res.Revision)] = true
				mu.Unlock()
			}
		}()
	}

	seen := map[int64]int{}
	var last int64
	read := func(until time.Time) {
		t.Helper()
		for time.Now().Before(until) {
			select {
			case resp, ok := <-wch:
				if !ok {
					t.Fatal("watch channel closed")
				}
				if err := resp.Err(); err != nil {
					t.Fatalf("watch failed: %v", err)
				}
				for _, ev := range resp.Events {
					if ev.Kv.ModRevision < last {
						t.Fatalf("event at %d after one at %d", ev.Kv.ModRevision, last)
					}
					last = ev.Kv.ModRevision
					seen[ev.Kv.ModRevision]++
				}
			case <-time.After(time.Until(until)):
			}
		}
	}
	read(time.Now().Add(time.Second))
	for _, id := range []uint64{1, 2} {
		a.fleet.Nodes[id].Kill()
		read(time.Now().Add(2 * time.Second))
		a.fleet.Nodes[id].Restart()
		read(time.Now().Add(2 * time.Second))
	}
	stop()
	wg.Wait()
	final := put(t, a, "kill/final", "end")
	deadline := time.Now().Add(watchWait)
	for seen[final] == 0 && time.Now().Before(deadline) {
		read(time.Now().Add(200 * time.Millisecond))
	}
	mu.Lock()
	defer mu.Unlock()
	if seen[final] == 0 {
		t.Fatalf("the final write at %d never arrived", final)
	}
	if len(acked) < 10 {
		t.Fatalf("only %d writes acknowledged", len(acked))
	}
	for r := range acked {
		if seen[r] == 0 {
			t.Fatalf("acknowledged write at %d never arrived (%d acknowledged, %d revisions seen)", r, len(acked), len(seen))
		}
	}
	for r, n := range seen {
		if n != 1 {
			t.Fatalf("write at %d delivered %d times", r, n)
		}
	}
	t.Logf("%d writes acknowledged, %d revisions delivered", len(acked), len(seen))
}

// fakeWatchSrv is the server side of a Watch stream that records what is
// sent and receives nothing.
type fakeWatchSrv struct {
	grpc.ServerStream
	ctx  context.Context
	sent chan *pb.WatchResponse
}

func (f *fakeWatchSrv) Context() context.Context { return f.ctx }

func (f *fakeWatchSrv) Send(resp *pb.WatchResponse) error {
	select {
	case f.sent <- resp:
		return nil
	case <-f.ctx.Done():
		return f.ctx.Err()
	}
}

func (f *fakeWatchSrv) Recv() (*pb.WatchRequest, error) {
	<-f.ctx.Done()
	return nil, f.ctx.Err()
}

// TestWatchProgressBookkeeping drives a stream's writer with what
// watchers hand over, without a fleet: when a progress request is
// answered, held, raised and dropped.
func TestWatchProgressBookkeeping(t *testing.T) {
	checkWatchLeaks(t)
	ctx, cancel := context.WithCancel(context.Background())
	srv := &fakeWatchSrv{ctx: ctx, sent: make(chan *pb.WatchResponse, 100)}
	st := &watchStream{
		ws:       &watchServer{s: &Server{cfg: Config{ClusterID: 0x10, MemberID: 1}}},
		srv:      srv,
		ctx:      ctx,
		out:      make(chan watchOut),
		lastTurn: closedTurn,
	}
	st.mu.ids = map[int64]*watch{}
	st.gate.moved = make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- st.write() }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	hand := func(o watchOut) {
		t.Helper()
		if !st.push(ctx, o) {
			t.Fatal("writer gone")
		}
	}
	expect := func(want int64, created bool) {
		t.Helper()
		select {
		case resp := <-srv.sent:
			checkHeader(t, resp.Header)
			if resp.Header.Revision != want || resp.Created != created || len(resp.Events) != 0 {
				t.Fatalf("sent %v; want revision %d (created %v)", resp, want, created)
			}
			if !created && resp.WatchId != -1 {
				t.Fatalf("progress answer with watch ID %d", resp.WatchId)
			}
		case <-time.After(watchWait):
			t.Fatalf("nothing sent; want revision %d", want)
		}
	}
	nothing := func() {
		t.Helper()
		// Everything handed over before has been taken by the writer
		// once another handover goes through; a register of a watcher
		// that is then dropped changes nothing.
		extra := &watch{}
		hand(watchOut{kind: outRegister, w: extra, known: true, progress: 1 << 62})
		hand(watchOut{kind: outLast, w: extra})
		select {
		case resp := <-srv.sent:
			t.Fatalf("unexpected %v", resp)
		default:
		}
	}
	gate := func() (uint64, bool) {
		rev, active, _ := st.barrier()
		return rev, active
	}

	w1, w2 := &watch{id: 1}, &watch{id: 2}
	hand(watchOut{kind: outRegister, w: w1, known: true, progress: 100}) // from a start revision
	hand(watchOut{kind: outRegister, w: w2})                             // from now, not created yet
	hand(watchOut{kind: outProgressRequest})
	nothing() // w2's start is unknown
	if rev, active := gate(); !active || rev != 0 {
		t.Fatalf("gate %d %v; want up at 0", rev, active)
	}
	// w2's created response: sent at 150, which raises the barrier; w1
	// is below it.
	hand(watchOut{kind: outResponse, w: w2, known: true, progress: 150,
		resp: &pb.WatchResponse{Header: st.ws.s.header(150), WatchId: 2, Created: true}})
	expect(150, true)
	nothing()
	if rev, active := gate(); !active || rev != 150 {
		t.Fatalf("gate %d %v; want up at 150", rev, active)
	}
	// w1 catches up past it: the answer is the least progress.
	hand(watchOut{kind: outResponse, w: w1, known: true, progress: 180})
	expect(150, false)
	nothing() // the writer finished with the answer
	if _, active := gate(); active {
		t.Fatal("gate still up after the answer")
	}
	hand(watchOut{kind: outResponse, w: w2, known: true, progress: 170})
	hand(watchOut{kind: outProgressRequest})
	expect(170, false)

	// w1 sends an event at 300; w2 never gets there: the request is
	// dropped after watchProgressHold and the gate goes down.
	hand(watchOut{kind: outResponse, w: w1, known: true, progress: 300,
		resp: &pb.WatchResponse{Header: st.ws.s.header(300), WatchId: 1, Events: []*mvccpb.Event{{Kv: &mvccpb.KeyValue{Key: []byte("k"), ModRevision: 300}}}}})
	<-srv.sent
	hand(watchOut{kind: outProgressRequest})
	nothing()
	deadline := time.Now().Add(watchWait)
	for _, active := gate(); active; _, active = gate() {
		if time.Now().After(deadline) {
			t.Fatal("gate still up")
		}
		time.Sleep(10 * time.Millisecond) // polling the condition
	}
	nothing()

	// Without watchers, no answer.
	hand(watchOut{kind: outLast, w: w1})
	hand(watchOut{kind: outLast, w: w2})
	hand(watchOut{kind: outProgressRequest})
	nothing()
	if _, active := gate(); active {
		t.Fatal("gate up without watchers")
	}
}
