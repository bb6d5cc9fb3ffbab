package router

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"

	"github.com/flotilla-kv/flotilla/rpc"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// Test doubles for unit tests: an in-process KV server whose answers a
// test scripts, and a RouteSource over a fixed table.

// fakeNode is a KV server on loopback holding an in-memory map (shared by
// every shard it serves). hook, when set, runs first on every request and
// an error it returns is the answer.
type fakeNode struct {
	pb.UnimplementedKVServer
	id   uint64
	addr string

	hook func(method string, hdr *pb.RequestHeader) error
	// noMulti makes Multi answer Unimplemented, as a node from before
	// Multi would.
	noMulti bool
	// routes, when set, is what LocalRoutes answers from (the shards this
	// node holds); nil answers Unimplemented.
	routes *staticSource
	srv    *grpc.Server
	// lis records the connections accepted, gRPC's and framed ones, for
	// stop.
	lis *recordingListener
	// pageCap, when set, cuts every Scan page at this many pairs.
	pageCap int
	// watches, when set, receives every Watch stream the node serves, for
	// the test to script (fakeWatch); nil answers Unimplemented.
	watches chan *fakeWatch

	mu struct {
		sync.Mutex
		data map[string][]byte
		reqs []fakeReq
		// rev is the node's last revision; every write takes the next.
		// hist holds every version of each key, oldest first; a delete
		// is a version with a nil Value.
		rev  uint64
		hist map[string][]*pb.KeyValue
	}
	calls  atomic.Int64
	multis atomic.Int64 // Multi calls served
}

type fakeReq struct {
	method string
	hdr    *pb.RequestHeader
	rev    uint64 // the revision a Get or Scan asked for
}

// Multi serves each op through the unary method, concurrently, as the real
// node does; enter records them as "get", "put", ... like unary calls.
func (n *fakeNode) Multi(ctx context.Context, req *pb.MultiRequest) (*pb.MultiResponse, error) {
	if n.noMulti {
		return nil, status.Error(codes.Unimplemented, "unknown method Multi")
	}
	n.multis.Add(1)
	resp := &pb.MultiResponse{Results: make([]*pb.MultiResult, len(req.GetOps()))}
	var wg sync.WaitGroup
	for i, op := range req.GetOps() {
		res := &pb.MultiResult{}
		resp.Results[i] = res
		wg.Go(func() {
			var err error
			switch o := op.GetOp().(type) {
			case *pb.MultiOp_Get:
				var r *pb.GetResponse
				r, err = n.Get(ctx, o.Get)
				res.Result = &pb.MultiResult_Get{Get: r}
			case *pb.MultiOp_Put:
				var r *pb.PutResponse
				r, err = n.Put(ctx, o.Put)
				res.Result = &pb.MultiResult_Put{Put: r}
			case *pb.MultiOp_Delete:
				var r *pb.DeleteResponse
				r, err = n.Delete(ctx, o.Delete)
				res.Result = &pb.MultiResult_Delete{Delete: r}
			default:
				err = status.Error(codes.Unimplemented, "fake: op not supported")
			}
			if err != nil {
				p := status.Convert(err).Proto()
				res.Result = nil
				res.Status = &pb.OpStatus{Code: p.GetCode(), Message: p.GetMessage(), Details: p.GetDetails()}
			}
		})
	}
	wg.Wait()
	return resp, nil
}

func newFakeNode(t *testing.T, id uint64) *fakeNode {
	t.Helper()
	n := &fakeNode{id: id}
	n.mu.data = map[string][]byte{}
	n.mu.hist = map[string][]*pb.KeyValue{}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n.addr = lis.Addr().String()
	n.lis = &recordingListener{Listener: lis}
	n.srv = grpc.NewServer()
	pb.RegisterKVServer(n.srv, n)
	// The Client's framed KV calls reach the same Multi, as a
	// shardnode's do.
	frames := rpc.NewKVFrameServer(n.Multi)
	// Demux starts its goroutine here, so that tests counting goroutines
	// count it before their clients exist.
	grpcSide := frames.Demux(n.lis, nil)
	go func() { _ = n.srv.Serve(grpcSide) }()
	t.Cleanup(func() {
		n.srv.Stop()
		frames.Close()
	})
	return n
}

// stop stops n: it stops serving gRPC and closes every connection, gRPC's
// and framed ones, under the calls in progress (which then fail as calls
// whose connection broke), before it returns. A hook may call it.
func (n *fakeNode) stop() {
	n.srv.Stop()
	n.lis.closeAll()
}

// recordingListener records the connections it accepts.
type recordingListener struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (l *recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

// closeAll closes every connection accepted, and the listener.
func (l *recordingListener) closeAll() {
	_ = l.Listener.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		_ = c.Close()
	}
}

// LocalRoutes answers from n.routes, as a shardnode answers from the
// descriptors of its replicas.
func (n *fakeNode) LocalRoutes(ctx context.Context, req *pb.ScanRoutesRequest) (*pb.ScanRoutesResponse, error) {
	if n.routes == nil {
		return nil, status.Error(codes.Unimplemented, "fake: no LocalRoutes")
	}
	routes, err := n.routes.ScanRoutes(ctx, req.GetStart(), req.GetEnd(), int(req.GetLimit()))
	if err != nil {
		return nil, err
	}
	return &pb.ScanRoutesResponse{Routes: routes}, nil
}

func (n *fakeNode) enter(method string, hdr *pb.RequestHeader) error {
	return n.enterAt(method, hdr, 0)
}

// enterAt is enter for a read at revision rev.
func (n *fakeNode) enterAt(method string, hdr *pb.RequestHeader, rev uint64) error {
	n.calls.Add(1)
	n.mu.Lock()
	n.mu.reqs = append(n.mu.reqs, fakeReq{method: method, hdr: proto.Clone(hdr).(*pb.RequestHeader), rev: rev})
	n.mu.Unlock()
	if n.hook != nil {
		return n.hook(method, hdr)
	}
	return nil
}

func (n *fakeNode) requests() []fakeReq {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.mu.reqs)
}

// writeLocked writes key (a delete when value is nil) at the next
// revision and returns it.
func (n *fakeNode) writeLocked(key, value []byte) uint64 {
	n.mu.rev++
	k := string(key)
	kv := &pb.KeyValue{Key: []byte(k), ModRevision: n.mu.rev}
	if value != nil {
		kv.Value, kv.CreateRevision, kv.Version = value, n.mu.rev, 1
		if h := n.mu.hist[k]; len(h) > 0 && h[len(h)-1].Value != nil {
			kv.CreateRevision, kv.Version = h[len(h)-1].GetCreateRevision(), h[len(h)-1].GetVersion()+1
		}
		n.mu.data[k] = value
	} else {
		delete(n.mu.data, k)
	}
	n.mu.hist[k] = append(n.mu.hist[k], kv)
	return n.mu.rev
}

// readLocked returns key as it was at rev (0: latest), or nil.
func (n *fakeNode) readLocked(key string, rev uint64) *pb.KeyValue {
	if rev == 0 {
		rev = n.mu.rev
	}
	h := n.mu.hist[key]
	for i := len(h) - 1; i >= 0; i-- {
		if h[i].GetModRevision() <= rev {
			if h[i].Value == nil {
				return nil
			}
			return h[i]
		}
	}
	if v, ok := n.mu.data[key]; ok && len(h) == 0 {
		return &pb.KeyValue{Key: []byte(key), Value: v} // put in place by a test
	}
	return nil
}

// readRevLocked is the revision a read at rev sees.
func (n *fakeNode) readRevLocked(rev uint64) uint64 {
	if rev == 0 {
		return n.mu.rev
	}
	return rev
}

func (n *fakeNode) Get(_ context.Context, req *pb.GetRequest) (*pb.GetResponse, error) {
	if err := n.enterAt("get", req.GetHeader(), req.GetRevision()); err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	resp := &pb.GetResponse{Revision: n.readRevLocked(req.GetRevision())}
	if kv := n.readLocked(string(req.GetKey()), req.GetRevision()); kv != nil {
		resp.Found, resp.Value = true, kv.GetValue()
		resp.CreateRevision, resp.ModRevision, resp.Version = kv.GetCreateRevision(), kv.GetModRevision(), kv.GetVersion()
	}
	return resp, nil
}

func (n *fakeNode) Put(_ context.Context, req *pb.PutRequest) (*pb.PutResponse, error) {
	if err := n.enter("put", req.GetHeader()); err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	v := req.GetValue()
	if v == nil {
		v = []byte{}
	}
	return &pb.PutResponse{Revision: n.writeLocked(req.GetKey(), v)}, nil
}

func (n *fakeNode) Delete(_ context.Context, req *pb.DeleteRequest) (*pb.DeleteResponse, error) {
	if err := n.enter("delete", req.GetHeader()); err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return &pb.DeleteResponse{Revision: n.writeLocked(req.GetKey(), nil)}, nil
}

func (n *fakeNode) Batch(_ context.Context, req *pb.BatchRequest) (*pb.BatchResponse, error) {
	if err := n.enter("batch", req.GetHeader()); err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.mu.rev++
	rev := n.mu.rev
	for _, o := range req.GetOps() {
		n.mu.rev = rev - 1 // every op at the batch's one revision
		if o.GetDelete() {
			n.writeLocked(o.GetKey(), nil)
		} else {
			v := o.GetValue()
			if v == nil {
				v = []byte{}
			}
			n.writeLocked(o.GetKey(), v)
		}
	}
	n.mu.rev = rev
	return &pb.BatchResponse{Revision: rev}, nil
}

func (n *fakeNode) Scan(_ context.Context, req *pb.ScanRequest) (*pb.ScanResponse, error) {
	if err := n.enterAt("scan", req.GetHeader(), req.GetRevision()); err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	var keys []string
	in := func(k string) bool {
		return k >= string(req.GetStart()) && (len(req.GetEnd()) == 0 || k < string(req.GetEnd()))
	}
	for k := range n.mu.hist {
		if in(k) {
			keys = append(keys, k)
		}
	}
	for k := range n.mu.data {
		if _, ok := n.mu.hist[k]; !ok && in(k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	resp := &pb.ScanResponse{Revision: n.readRevLocked(req.GetRevision())}
	for _, k := range keys {
		kv := n.readLocked(k, req.GetRevision())
		if kv == nil {
			continue
		}
		if (req.GetLimit() > 0 && len(resp.Kvs) == int(req.GetLimit())) || (n.pageCap > 0 && len(resp.Kvs) == n.pageCap) {
			resp.More = true
			resp.ResumeKey = append([]byte(resp.Kvs[len(resp.Kvs)-1].GetKey()), 0)
			break
		}
		resp.Kvs = append(resp.Kvs, proto.Clone(kv).(*pb.KeyValue))
	}
	return resp, nil
}

// fakeWatch is one Watch stream a fakeNode serves: it sends what the test
// pushes, in order, and ends with the first error pushed.
type fakeWatch struct {
	req   *pb.WatchRequest
	items chan any // *pb.WatchResponse or error
}

// Watch hands the stream to the test through n.watches and serves it.
func (n *fakeNode) Watch(req *pb.WatchRequest, s pb.KV_WatchServer) error {
	if err := n.enterAt("watch", req.GetHeader(), req.GetStartRevision()); err != nil {
		return err
	}
	if n.watches == nil {
		return status.Error(codes.Unimplemented, "fake: no Watch")
	}
	fw := &fakeWatch{req: req, items: make(chan any, 1024)}
	select {
	case n.watches <- fw:
	case <-s.Context().Done():
		return s.Context().Err()
	}
	for {
		select {
		case it := <-fw.items:
			if err, ok := it.(error); ok {
				return err
			}
			if err := s.Send(it.(*pb.WatchResponse)); err != nil {
				return err
			}
		case <-s.Context().Done():
			return s.Context().Err()
		}
	}
}

// nextWatch returns the next Watch stream n serves, failing the test
// after 10s.
func (n *fakeNode) nextWatch(t *testing.T) *fakeWatch {
	t.Helper()
	select {
	case fw := <-n.watches:
		return fw
	case <-time.After(10 * time.Second):
		t.Fatalf("node %d: no Watch stream opened", n.id)
		return nil
	}
}

// created sends the stream's created response, with progress start-1
// (start: what a start_revision of 0 means).
func (fw *fakeWatch) created(start uint64) {
	fw.items <- &pb.WatchResponse{Created: true, ProgressRevision: start - 1}
}

// progress sends a response with events ("PUT key rev" or "DEL key rev"
// strings, of whole writes) and the progress revision.
func (fw *fakeWatch) progress(progress uint64, events ...*pb.Event) {
	fw.items <- &pb.WatchResponse{ProgressRevision: progress, Events: events}
}

// fail ends the stream with err.
func (fw *fakeWatch) fail(err error) { fw.items <- err }

// putEvent is a PUT of key at rev, with value "v<rev>".
func putEvent(key string, rev uint64) *pb.Event {
	return &pb.Event{Type: pb.Event_PUT, Kv: &pb.KeyValue{Key: []byte(key), Value: fmt.Appendf(nil, "v%d", rev), CreateRevision: rev, ModRevision: rev, Version: 1}}
}

// withDetail returns a status error with code c carrying detail d.
func withDetail(c codes.Code, d protoadapt.MessageV1) error {
	s, err := status.New(c, "scripted").WithDetails(d)
	if err != nil {
		panic(err)
	}
	return s.Err()
}

// staticSource is a RouteSource over a fixed table of routes, which a test
// may replace; it counts its calls.
type staticSource struct {
	mu struct {
		sync.Mutex
		routes []*pb.Route
	}
	gets, scans atomic.Int64
	// block, when set, is waited on by GetRoute before answering.
	block chan struct{}
}

func newStaticSource(routes ...*pb.Route) *staticSource {
	s := &staticSource{}
	s.mu.routes = routes
	return s
}

func (s *staticSource) set(routes ...*pb.Route) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.routes = routes
}

func (s *staticSource) GetRoute(ctx context.Context, key []byte, neighbours int) (*pb.Route, []*pb.Route, error) {
	s.gets.Add(1)
	if s.block != nil {
		select {
		case <-s.block:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, r := range s.mu.routes {
		if newRoute(r.GetShard(), 0, 0).contains(key) {
			lo, hi := max(i-neighbours, 0), min(i+neighbours+1, len(s.mu.routes))
			var nb []*pb.Route
			for j := lo; j < hi; j++ {
				if j != i {
					nb = append(nb, proto.Clone(s.mu.routes[j]).(*pb.Route))
				}
			}
			return proto.Clone(r).(*pb.Route), nb, nil
		}
	}
	return nil, nil, status.Errorf(codes.NotFound, "no route for %q", key)
}

func (s *staticSource) ScanRoutes(_ context.Context, start, end []byte, limit int) ([]*pb.Route, error) {
	s.scans.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*pb.Route
	for _, r := range s.mu.routes {
		d := r.GetShard()
		if (len(end) == 0 || bytes.Compare(d.GetStart(), end) < 0) && (len(d.GetEnd()) == 0 || bytes.Compare(start, d.GetEnd()) < 0) {
			out = append(out, proto.Clone(r).(*pb.Route))
		}
		if limit > 0 && len(out) == limit {
			break
		}
	}
	return out, nil
}

// fakeRoute is shard id over [start, end) with a replica on each node
// (replica ID node*100+id), led by leader (0: unknown).
func fakeRoute(id uint64, start, end string, leader uint64, nodes ...*fakeNode) *pb.Route {
	d := &pb.Descriptor{ShardId: id, Epoch: &pb.Epoch{ConfVer: 1, Version: 1}}
	if start != "" {
		d.Start = []byte(start)
	}
	if end != "" {
		d.End = []byte(end)
	}
	rt := &pb.Route{Shard: d, Addresses: map[uint64]string{}}
	for _, n := range nodes {
		d.Replicas = append(d.Replicas, &pb.Replica{ReplicaId: n.id*100 + id, NodeId: n.id})
		rt.Addresses[n.id] = n.addr
	}
	if leader != 0 {
		rt.LeaderNodeId, rt.LeaderReplicaId = leader, leader*100+id
	}
	return rt
}

// newTestClient returns a Client over src with fast backoff, closed at
// cleanup.
func newTestClient(t *testing.T, src RouteSource, tweak func(*Config)) *Client {
	t.Helper()
	cfg := Config{RouteSource: src, BackoffBase: time.Millisecond, BackoffMax: 20 * time.Millisecond}
	if tweak != nil {
		tweak(&cfg)
	}
	c, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// placementOver serves a staticSource as the Placement gRPC service.
type placementOver struct {
	pb.UnimplementedPlacementServer
	src *staticSource
}

func servePlacement(t *testing.T, src *staticSource) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterPlacementServer(srv, &placementOver{src: src})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

func (p *placementOver) GetRoute(ctx context.Context, req *pb.GetRouteRequest) (*pb.GetRouteResponse, error) {
	rt, nb, err := p.src.GetRoute(ctx, req.GetKey(), int(req.GetNeighbours()))
	if err != nil {
		return nil, err
	}
	return &pb.GetRouteResponse{Route: rt, Neighbours: nb}, nil
}

func (p *placementOver) ScanRoutes(ctx context.Context, req *pb.ScanRoutesRequest) (*pb.ScanRoutesResponse, error) {
	routes, err := p.src.ScanRoutes(ctx, req.GetStart(), req.GetEnd(), int(req.GetLimit()))
	if err != nil {
		return nil, err
	}
	return &pb.ScanRoutesResponse{Routes: routes}, nil
}

// Compact records the call and answers the revision asked for.
func (n *fakeNode) Compact(_ context.Context, req *pb.CompactRequest) (*pb.CompactResponse, error) {
	if err := n.enterAt("compact", req.GetHeader(), req.GetRevision()); err != nil {
		return nil, err
	}
	return &pb.CompactResponse{CompactRevision: req.GetRevision()}, nil
}

// Now answers the node's last revision: in the fake, every node counts
// its own revisions, so "fresh" means above this node's writes.
func (n *fakeNode) Now(_ context.Context, _ *pb.NowRequest) (*pb.NowResponse, error) {
	if err := n.enter("now", nil); err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return &pb.NowResponse{Revision: n.mu.rev}, nil
}
