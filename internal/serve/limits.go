package serve

import (
	"context"
	"fmt"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// Resource limits of every Flotilla gRPC server (see ServerOptions):
//
//   - one message: MaxMessageBytes; a larger request fails with
//     ResourceExhausted (gRPC's own check);
//   - requests in flight on one client connection (unary calls and
//     streams): MaxRequestsPerConn; one more fails at once with
//     ResourceExhausted and a Busy detail, which the router backs off on.
//     HTTP/2's MaxConcurrentStreams is set above it (MaxStreamsPerConn) as
//     the protocol-level cap: a gRPC client that reaches that one queues
//     its streams instead of failing, so it is not the limit callers see;
//   - snapshot memory on the receiver: rpc.TransportConfig.MaxSnapshotBufferBytes.
const (
	MaxRequestsPerConn = 4096
	MaxStreamsPerConn  = 2 * MaxRequestsPerConn
)

// RequestLimitOptions returns server options that bound the requests one
// client connection may have in flight to max: a stats handler tags each
// connection with a counter, and interceptors refuse a request beyond max
// with ResourceExhausted. ServerOptions includes them with
// MaxRequestsPerConn; tests use a smaller max.
func RequestLimitOptions(max int) []grpc.ServerOption {
	l := &connLimiter{max: int64(max)}
	return []grpc.ServerOption{
		grpc.StatsHandler(l),
		grpc.ChainUnaryInterceptor(l.unary),
		grpc.ChainStreamInterceptor(l.stream),
	}
}

// connLimiter counts the requests in flight per connection. The counter
// lives in the connection's context (TagConn), which grpc derives every
// request's context from, so nothing is shared between connections and
// nothing needs cleaning up when one closes.
type connLimiter struct{ max int64 }

// connInFlightKey keys a limiter's counter in a connection's context; it
// names the limiter, so limiters stacked on one server (ServerOptions' own
// and a caller's stricter one) each keep their own count.
type connInFlightKey struct{ l *connLimiter }

func (l *connLimiter) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return context.WithValue(ctx, connInFlightKey{l}, new(atomic.Int64))
}
func (l *connLimiter) HandleConn(context.Context, stats.ConnStats) {}
func (l *connLimiter) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	return ctx
}
func (l *connLimiter) HandleRPC(context.Context, stats.RPCStats) {}

// acquire counts one more request on ctx's connection, or refuses it.
func (l *connLimiter) acquire(ctx context.Context) (release func(), err error) {
	n, ok := ctx.Value(connInFlightKey{l}).(*atomic.Int64)
	if !ok {
		return func() {}, nil
	}
	if n.Add(1) > l.max {
		n.Add(-1)
		msg := fmt.Sprintf("too many requests in flight on this connection (limit %d); retry later", l.max)
		s, derr := status.New(codes.ResourceExhausted, msg).WithDetails(&pb.Busy{RetryAfterMs: 10})
		if derr != nil {
			return nil, status.Error(codes.ResourceExhausted, msg)
		}
		return nil, s.Err()
	}
	return func() { n.Add(-1) }, nil
}

func (l *connLimiter) unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	release, err := l.acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	return h(ctx, req)
}

func (l *connLimiter) stream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	release, err := l.acquire(ss.Context())
	if err != nil {
		return err
	}
	defer release()
	return h(srv, ss)
}
