package rpc

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// LocalClient returns a pb.KVClient that serves unary calls by calling s's
// handlers in the caller's goroutine: no gRPC, no serialisation, no
// loopback connection. A router running inside the node that serves s uses
// it for the requests it sends to its own node. Watch, a stream, goes to
// fallback (a gRPC client of the same node); with fallback nil it fails
// with Unimplemented. Safe for concurrent use, as s is.
//
// What the gRPC path gave and a local call must give too:
//
//   - Ownership. The handlers neither keep nor modify request messages
//     (writes encode their command into a proposal; a forwarded request
//     is sent and waited for), and responses hold copies of what the
//     store read (shard copies every key and value out of Pebble), never
//     buffers it reuses. A response may alias bytes of its own request
//     (both then belong to the caller). The caller must not modify a
//     request while the call runs, as with gRPC.
//   - Metadata. The handler sees as incoming metadata exactly the
//     caller's outgoing metadata, as gRPC would transmit it, and no
//     outgoing metadata: the caller's own incoming metadata (say, of the
//     etcd request a router call serves) does not leak in, so a local call
//     is forwarded to a leader as a fresh client request is unless the
//     caller marked it forwarded.
//   - Deadlines and cancellation pass through the context unchanged. A
//     call whose context is already done fails with Canceled or
//     DeadlineExceeded before its handler runs, as a gRPC client fails it
//     before sending: a handler whose answer is ready at once (a read
//     served under the leader's lease) would otherwise answer it.
//   - Errors. A handler's error that is not a gRPC status becomes the
//     status the gRPC server would send (Canceled, DeadlineExceeded or
//     Unknown), and an error comes with a nil response.
//   - CallOptions are ignored: there is no message size limit to raise,
//     no header or trailer to return.
//   - The server's interceptors do not run: a local call is not counted
//     by the node's per-RPC telemetry (rpc request counts and latencies),
//     not limited by the per-connection request limiter, and gets no
//     server span of its own (an apply span becomes a child of the
//     caller's span). The router's own counters (Stats.Requests, RPCs)
//     still count it.
//   - Panics. The KV server installs no recovery: a handler panic ends the
//     process either way; here it unwinds through the caller first.
func (s *KVServer) LocalClient(fallback pb.KVClient) pb.KVClient {
	return localKV{s: s, fallback: fallback}
}

// localKV is LocalClient's client.
type localKV struct {
	s        *KVServer
	fallback pb.KVClient
}

var _ pb.KVClient = localKV{}

// serverContext turns a caller's context into the context a handler
// would get from gRPC: the caller's outgoing metadata becomes the
// incoming metadata, and there is no outgoing metadata.
func serverContext(ctx context.Context) context.Context {
	md, _ := metadata.FromOutgoingContext(ctx)
	ctx = metadata.NewIncomingContext(ctx, md.Copy())
	return metadata.NewOutgoingContext(ctx, nil)
}

// unary calls handler h as the gRPC server would, unless ctx is already
// done (gRPC's client would not send the call): with serverContext,
// and with an error that is not a status turned into the status gRPC
// would make of it (a context's error into Canceled or DeadlineExceeded,
// anything else into Unknown).
func unary[Req, Resp any](ctx context.Context, in Req, h func(context.Context, Req) (Resp, error)) (Resp, error) {
	var zero Resp
	if err := ctx.Err(); err != nil {
		return zero, status.FromContextError(err).Err()
	}
	resp, err := h(serverContext(ctx), in)
	if err != nil {
		if _, ok := status.FromError(err); !ok {
			err = status.FromContextError(err).Err()
		}
		return zero, err
	}
	return resp, nil
}

func (l localKV) Get(ctx context.Context, in *pb.GetRequest, _ ...grpc.CallOption) (*pb.GetResponse, error) {
	return unary(ctx, in, l.s.Get)
}

func (l localKV) Put(ctx context.Context, in *pb.PutRequest, _ ...grpc.CallOption) (*pb.PutResponse, error) {
	return unary(ctx, in, l.s.Put)
}

func (l localKV) Delete(ctx context.Context, in *pb.DeleteRequest, _ ...grpc.CallOption) (*pb.DeleteResponse, error) {
	return unary(ctx, in, l.s.Delete)
}

func (l localKV) CompareAndSwap(ctx context.Context, in *pb.CompareAndSwapRequest, _ ...grpc.CallOption) (*pb.CompareAndSwapResponse, error) {
	return unary(ctx, in, l.s.CompareAndSwap)
}

func (l localKV) Scan(ctx context.Context, in *pb.ScanRequest, _ ...grpc.CallOption) (*pb.ScanResponse, error) {
	return unary(ctx, in, l.s.Scan)
}

func (l localKV) Batch(ctx context.Context, in *pb.BatchRequest, _ ...grpc.CallOption) (*pb.BatchResponse, error) {
	return unary(ctx, in, l.s.Batch)
}

func (l localKV) Txn(ctx context.Context, in *pb.TxnRequest, _ ...grpc.CallOption) (*pb.TxnResponse, error) {
	return unary(ctx, in, l.s.Txn)
}

func (l localKV) Now(ctx context.Context, in *pb.NowRequest, _ ...grpc.CallOption) (*pb.NowResponse, error) {
	return unary(ctx, in, l.s.Now)
}

func (l localKV) Multi(ctx context.Context, in *pb.MultiRequest, _ ...grpc.CallOption) (*pb.MultiResponse, error) {
	return unary(ctx, in, l.s.Multi)
}

func (l localKV) Compact(ctx context.Context, in *pb.CompactRequest, _ ...grpc.CallOption) (*pb.CompactResponse, error) {
	return unary(ctx, in, l.s.Compact)
}

func (l localKV) LocalRoutes(ctx context.Context, in *pb.ScanRoutesRequest, _ ...grpc.CallOption) (*pb.ScanRoutesResponse, error) {
	return unary(ctx, in, l.s.LocalRoutes)
}

func (l localKV) LeaseGrant(ctx context.Context, in *pb.LeaseGrantRequest, _ ...grpc.CallOption) (*pb.LeaseGrantResponse, error) {
	return unary(ctx, in, l.s.LeaseGrant)
}

func (l localKV) LeaseRevoke(ctx context.Context, in *pb.LeaseRevokeRequest, _ ...grpc.CallOption) (*pb.LeaseRevokeResponse, error) {
	return unary(ctx, in, l.s.LeaseRevoke)
}

func (l localKV) LeaseKeepAlive(ctx context.Context, in *pb.LeaseKeepAliveRequest, _ ...grpc.CallOption) (*pb.LeaseKeepAliveResponse, error) {
	return unary(ctx, in, l.s.LeaseKeepAlive)
}

func (l localKV) LeaseTimeToLive(ctx context.Context, in *pb.LeaseTimeToLiveRequest, _ ...grpc.CallOption) (*pb.LeaseTimeToLiveResponse, error) {
	return unary(ctx, in, l.s.LeaseTimeToLive)
}

func (l localKV) LeaseAttach(ctx context.Context, in *pb.LeaseAttachRequest, _ ...grpc.CallOption) (*pb.LeaseAttachResponse, error) {
	return unary(ctx, in, l.s.LeaseAttach)
}

func (l localKV) LeaseStatus(ctx context.Context, in *pb.LeaseStatusRequest, _ ...grpc.CallOption) (*pb.LeaseStatusResponse, error) {
	return unary(ctx, in, l.s.LeaseStatus)
}

// Watch goes to the fallback client: a stream is not short-circuited.
func (l localKV) Watch(ctx context.Context, in *pb.WatchRequest, opts ...grpc.CallOption) (grpc.ServerStreamingClient[pb.WatchResponse], error) {
	if l.fallback == nil {
		return nil, status.Error(codes.Unimplemented, "rpc: a local KV client without a fallback cannot watch")
	}
	return l.fallback.Watch(ctx, in, opts...)
}
