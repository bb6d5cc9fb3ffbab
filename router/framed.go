package router

import (
	"context"
	"crypto/tls"
	"errors"
	"sync"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/internal/framed"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// Framed KV connections (framed.DialKV) carry a node's Get, Put, Delete,
// CompareAndSwap and Multi calls past gRPC: each call is one request
// frame and one answer frame on a TCP connection of its own for the
// call's time, written and read by the calling goroutine, with nothing
// in between. A node's framedConns keeps the connections idle between
// calls; the coalescer keeps at most Config.BatchesPerNode calls in
// flight to a node, so that is about how many it holds.
//
// A call carries what its gRPC call would: the request, the deadline,
// and back the response or the full status. It does not pass through
// the DialOptions' interceptors and stats handlers, and it is not traced:
// a call whose context carries a sampled trace goes over gRPC, as does
// every other method. A node that does not serve framed connections (an
// older build), or serves them with the other security (FramedTLS does
// not match the fleet), is called over gRPC; it is asked again after
// framedRetryAfter.
const (
	// framedRetryAfter is how long a node that refused framed
	// connections is called over gRPC before the Client tries again.
	framedRetryAfter = time.Minute
	// framedMaxIdle bounds the idle connections kept per node.
	framedMaxIdle = 64
	// framedDialBackoffBase and framedDialBackoffMax shape the wait after
	// a failed dial during which calls to the node fail at once, as gRPC
	// fails calls on a connection in TRANSIENT_FAILURE.
	framedDialBackoffBase = 50 * time.Millisecond
	framedDialBackoffMax  = 2 * time.Second
)

// framedConns holds the framed KV connections to one node. Safe for
// concurrent use.
type framedConns struct {
	addr  string
	tls   *tls.Config
	dial  framed.DialFunc
	stats *counters
	now   func() time.Time
	mu    struct {
		sync.Mutex
		idle []*framed.KVConn
		// busy holds the connections with a call in progress, which close
		// closes under their calls, as closing a gRPC connection ends
		// its calls.
		busy   map[*framed.KVConn]struct{}
		closed bool
		// grpcUntil: the node refused framed connections; call it over
		// gRPC until then.
		grpcUntil time.Time
		// failUntil and backoff: the last dial failed; calls fail at once
		// until failUntil, and the next failure doubles backoff.
		failUntil time.Time
		backoff   time.Duration
		dialErr   error
	}
}

func newFramedConns(addr string, tlsCfg *tls.Config, dial framed.DialFunc, stats *counters) *framedConns {
	f := &framedConns{addr: addr, tls: tlsCfg, dial: dial, stats: stats, now: time.Now}
	f.mu.busy = map[*framed.KVConn]struct{}{}
	return f
}

// multi sends req over a framed connection. viaFramed is false when the
// node is to be called over gRPC instead (it refused framed connections,
// or the pool is closed), and nothing was sent. Otherwise the outcome is the
// call's, as a gRPC call's would be: the response, or a status error; a
// call that may have reached the node marks ctx's sendRecord.
func (f *framedConns) multi(ctx context.Context, req *pb.MultiRequest) (resp *pb.MultiResponse, viaFramed bool, err error) {
	for attempt := 0; ; attempt++ {
		c, fresh, viaFramed, err := f.take(ctx)
		if !viaFramed || err != nil {
			return nil, viaFramed, err
		}
		resp, sent, err := c.Multi(ctx, req)
		if !c.Broken() && status.Code(err) == codes.Unimplemented {
			// The node serves no Multi (a build before it, or one that
			// turned it off): nothing ran. It is called over gRPC, where
			// the coalescer learns the same and sends unary calls.
			f.put(c)
			f.fallBack()
			return nil, false, nil
		}
		if sent {
			if r := sendRecordOf(ctx); r != nil {
				r.mark()
			}
			f.stats.framedRPCs.Add(1)
		}
		if !c.Broken() {
			f.put(c)
			return resp, true, err
		}
		f.drop(c)
		// An idle connection the node closed (it restarted) fails before
		// sending. The other idle ones are likely closed too: they are
		// dropped, and a new connection is tried once.
		if !sent && !fresh && attempt == 0 && ctx.Err() == nil {
			f.dropIdle()
			continue
		}
		return nil, true, err
	}
}

// take returns an idle connection, or a new one (fresh). viaFramed is false
// when the node is called over gRPC; err is the status of a dial that failed
// (Unavailable, nothing sent) or of ctx's end.
func (f *framedConns) take(ctx context.Context) (c *framed.KVConn, fresh, viaFramed bool, err error) {
	f.mu.Lock()
	switch now := f.now(); {
	case f.mu.closed || now.Before(f.mu.grpcUntil):
		f.mu.Unlock()
		return nil, false, false, nil
	case now.Before(f.mu.failUntil):
		err := f.mu.dialErr
		f.mu.Unlock()
		return nil, false, true, status.Errorf(codes.Unavailable, "router: connecting to %s: %v", f.addr, err)
	}
	if n := len(f.mu.idle); n > 0 {
		c := f.mu.idle[n-1]
		f.mu.idle[n-1] = nil
		f.mu.idle = f.mu.idle[:n-1]
		f.mu.busy[c] = struct{}{}
		f.mu.Unlock()
		return c, false, true, nil
	}
	f.mu.Unlock()

	c, err = framed.DialKV(ctx, f.addr, f.tls, f.dial)
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case err == nil && f.mu.closed:
		_ = c.Close()
		return nil, false, false, nil
	case err == nil:
		f.mu.backoff, f.mu.failUntil, f.mu.dialErr = 0, time.Time{}, nil
		f.mu.busy[c] = struct{}{}
		return c, true, true, nil
	case errors.Is(err, framed.ErrKVUnsupported) || errors.Is(err, framed.ErrKVMode):
		f.fallBackLocked()
		return nil, false, false, nil
	case ctx.Err() != nil:
		return nil, false, true, status.FromContextError(ctx.Err()).Err()
	default:
		f.mu.backoff = min(max(2*f.mu.backoff, framedDialBackoffBase), framedDialBackoffMax)
		f.mu.failUntil, f.mu.dialErr = f.now().Add(f.mu.backoff), err
		return nil, false, true, status.Errorf(codes.Unavailable, "router: connecting to %s: %v", f.addr, err)
	}
}

// fallBack calls the node over gRPC for framedRetryAfter.
func (f *framedConns) fallBack() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fallBackLocked()
}

func (f *framedConns) fallBackLocked() {
	f.mu.grpcUntil = f.now().Add(framedRetryAfter)
	f.stats.framedFallbacks.Add(1)
}

// put keeps c, taken by take, for the next call, or closes it.
func (f *framedConns) put(c *framed.KVConn) {
	f.mu.Lock()
	delete(f.mu.busy, c)
	if !f.mu.closed && len(f.mu.idle) < framedMaxIdle {
		f.mu.idle = append(f.mu.idle, c)
		c = nil
	}
	f.mu.Unlock()
	if c != nil {
		_ = c.Close()
	}
}

// drop closes c, taken by take, after its call broke it.
func (f *framedConns) drop(c *framed.KVConn) {
	f.mu.Lock()
	delete(f.mu.busy, c)
	f.mu.Unlock()
	_ = c.Close()
}

// dropIdle closes the idle connections.
func (f *framedConns) dropIdle() {
	f.mu.Lock()
	idle := f.mu.idle
	f.mu.idle = nil
	f.mu.Unlock()
	for _, c := range idle {
		_ = c.Close()
	}
}

// failing reports whether the last dial to the node failed and calls to
// it now fail at once.
func (f *framedConns) failing() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now().Before(f.mu.failUntil)
}

// close closes every connection, ending the calls in progress (they fail
// as calls whose connection broke); later calls go to gRPC, which is
// closed too.
func (f *framedConns) close() {
	f.mu.Lock()
	conns := f.mu.idle
	for c := range f.mu.busy {
		conns = append(conns, c)
	}
	f.mu.idle, f.mu.busy, f.mu.closed = nil, nil, true
	f.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

// framedKV is a node's KV client when framed connections are on: Get,
// Put, Delete, CompareAndSwap and Multi go over the node's framed
// connections unless their context carries a sampled trace, every other
// method (and every call the node refuses framed) over gRPC.
type framedKV struct {
	pb.KVClient
	f *framedConns
}

func (k framedKV) Multi(ctx context.Context, in *pb.MultiRequest, opts ...grpc.CallOption) (*pb.MultiResponse, error) {
	if !traced(ctx) {
		if resp, viaFramed, err := k.f.multi(ctx, in); viaFramed {
			return resp, err
		}
	}
	return k.KVClient.Multi(ctx, in, opts...)
}

// one sends op as a Multi of one over a framed connection; viaFramed as
// framedConns.multi. The op's own status is returned as the call's
// error, as its unary method returns it.
func (k framedKV) one(ctx context.Context, op *pb.MultiOp) (res *pb.MultiResult, viaFramed bool, err error) {
	if traced(ctx) {
		return nil, false, nil
	}
	resp, viaFramed, err := k.f.multi(ctx, &pb.MultiRequest{Ops: []*pb.MultiOp{op}})
	switch {
	case !viaFramed || err != nil:
		return nil, viaFramed, err
	case len(resp.GetResults()) != 1:
		return nil, true, status.Errorf(codes.Internal, "router: Multi of 1 op answered %d results", len(resp.GetResults()))
	}
	res = resp.GetResults()[0]
	if s := res.GetStatus(); s.GetCode() != int32(codes.OK) {
		return nil, true, status.ErrorProto(&spb.Status{Code: s.GetCode(), Message: s.GetMessage(), Details: s.GetDetails()})
	}
	return res, true, nil
}

func (k framedKV) Get(ctx context.Context, in *pb.GetRequest, opts ...grpc.CallOption) (*pb.GetResponse, error) {
	if res, viaFramed, err := k.one(ctx, &pb.MultiOp{Op: &pb.MultiOp_Get{Get: in}}); viaFramed {
		return res.GetGet(), err
	}
	return k.KVClient.Get(ctx, in, opts...)
}

func (k framedKV) Put(ctx context.Context, in *pb.PutRequest, opts ...grpc.CallOption) (*pb.PutResponse, error) {
	if res, viaFramed, err := k.one(ctx, &pb.MultiOp{Op: &pb.MultiOp_Put{Put: in}}); viaFramed {
		return res.GetPut(), err
	}
	return k.KVClient.Put(ctx, in, opts...)
}

func (k framedKV) Delete(ctx context.Context, in *pb.DeleteRequest, opts ...grpc.CallOption) (*pb.DeleteResponse, error) {
	if res, viaFramed, err := k.one(ctx, &pb.MultiOp{Op: &pb.MultiOp_Delete{Delete: in}}); viaFramed {
		return res.GetDelete(), err
	}
	return k.KVClient.Delete(ctx, in, opts...)
}

func (k framedKV) CompareAndSwap(ctx context.Context, in *pb.CompareAndSwapRequest, opts ...grpc.CallOption) (*pb.CompareAndSwapResponse, error) {
	if res, viaFramed, err := k.one(ctx, &pb.MultiOp{Op: &pb.MultiOp_CompareAndSwap{CompareAndSwap: in}}); viaFramed {
		return res.GetCompareAndSwap(), err
	}
	return k.KVClient.CompareAndSwap(ctx, in, opts...)
}
