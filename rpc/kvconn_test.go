package rpc

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/flotilla-kv/flotilla/internal/framed"
	"github.com/flotilla-kv/flotilla/internal/testutil"
	"github.com/flotilla-kv/flotilla/internal/tlsconfig"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// kvGets is a Multi of one Get per key.
func kvGets(keys ...string) *pb.MultiRequest {
	req := &pb.MultiRequest{}
	for _, k := range keys {
		req.Ops = append(req.Ops, &pb.MultiOp{Op: &pb.MultiOp_Get{Get: &pb.GetRequest{Key: []byte(k)}}})
	}
	return req
}

// kvEcho answers each op with a Get result whose value is the op's key.
func kvEcho(req *pb.MultiRequest) *pb.MultiResponse {
	resp := &pb.MultiResponse{}
	for _, op := range req.GetOps() {
		resp.Results = append(resp.Results, &pb.MultiResult{
			Result: &pb.MultiResult_Get{Get: &pb.GetResponse{Found: true, Value: op.GetGet().GetKey()}},
		})
	}
	return resp
}

// kvValues returns the values of resp's Get results, in order.
func kvValues(resp *pb.MultiResponse) []string {
	var vs []string
	for _, r := range resp.GetResults() {
		vs = append(vs, string(r.GetGet().GetValue()))
	}
	return vs
}

// echoHandler is a KVFrameHandler answering with kvEcho, counting its
// calls.
type echoHandler struct{ calls atomic.Int64 }

func (h *echoHandler) handle(_ context.Context, req *pb.MultiRequest) (*pb.MultiResponse, error) {
	h.calls.Add(1)
	return kvEcho(req), nil
}

// serveKV serves h's framed KV connections and a gRPC health service on
// one demultiplexed listener, with TLS if tlsCfg is set; it returns the
// address and the framed server, which the test's cleanup closes.
func serveKV(t *testing.T, h KVFrameHandler, tlsCfg *tlsconfig.Config) (string, *KVFrameServer) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var opts []grpc.ServerOption
	var serverTLS *tls.Config
	if tlsCfg != nil {
		serverTLS = tlsCfg.ServerTLS()
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsCfg.ServerTLS())))
	}
	srv := grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	ks := NewKVFrameServer(h)
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(ks.Demux(lis, serverTLS)) })
	t.Cleanup(func() { ks.Close(); srv.Stop(); wg.Wait() })
	return lis.Addr().String(), ks
}

func dialKV(t *testing.T, addr string, tlsCfg *tlsconfig.Config) *framed.KVConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := framed.DialKV(ctx, addr, tlsCfg.ClientTLS(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// kvModes runs f as a plaintext and a TLS subtest.
func kvModes(t *testing.T, f func(t *testing.T, tlsCfg *tlsconfig.Config)) {
	for _, name := range []string{"plaintext", "tls"} {
		t.Run(name, func(t *testing.T) {
			var tlsCfg *tlsconfig.Config
			if name == "tls" {
				tlsCfg = devTLS(t)
			}
			f(t, tlsCfg)
		})
	}
}

// The framed KV wire format as internal/framed/kv.go specifies it, for
// the connections these tests write by hand.
const (
	kvModePlain          = 'P'
	kvVerdictYes         = 'Y'
	kvConnAccepted       = "FLKVMOK\x01"
	kvRequestHeaderBytes = 12
)

// rawKVConn opens a plaintext framed KV connection by hand and completes
// its handshake.
func rawKVConn(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, framed.KVMagic+string(rune(kvModePlain))); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	var hs [1 + len(kvConnAccepted)]byte
	if _, err := io.ReadFull(r, hs[:]); err != nil || hs[0] != kvVerdictYes || string(hs[1:]) != kvConnAccepted {
		t.Fatalf("handshake: %q, %v", hs, err)
	}
	return conn, r
}

// kvRequestFrame is a request frame carrying payload as its MultiRequest,
// with no deadline, and its checksum xored with crcXor.
func kvRequestFrame(payload []byte, crcXor uint32) []byte {
	b := make([]byte, kvRequestHeaderBytes, kvRequestHeaderBytes+len(payload)+4)
	binary.BigEndian.PutUint32(b[0:], uint32(len(payload)))
	b = append(b, payload...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli)^crcXor)
}

// TestKVConnRoundTrip: calls on one framed KV connection get the
// handler's answers in order, in plaintext and over TLS, while the same
// listener still serves gRPC.
func TestKVConnRoundTrip(t *testing.T) {
	kvModes(t, func(t *testing.T, tlsCfg *tlsconfig.Config) {
		h := &echoHandler{}
		addr, _ := serveKV(t, h.handle, tlsCfg)
		c := dialKV(t, addr, tlsCfg)
		ctx := testutil.Context(t, 5*time.Second)
		for i := range 10 {
			keys := make([]string, i+1)
			for j := range keys {
				keys[j] = fmt.Sprintf("key-%d-%d", i, j)
			}
			resp, sent, err := c.Multi(ctx, kvGets(keys...))
			if err != nil || !sent {
				t.Fatalf("call %d: sent %v, %v", i, sent, err)
			}
			if got := kvValues(resp); !slices.Equal(got, keys) {
				t.Fatalf("call %d: values %q, want %q", i, got, keys)
			}
		}
		if c.Broken() {
			t.Fatal("the connection is broken after answered calls")
		}
		if got := h.calls.Load(); got != 10 {
			t.Fatalf("handler called %d times, want 10", got)
		}

		// gRPC on the same port.
		creds := insecure.NewCredentials()
		if tlsCfg != nil {
			creds = credentials.NewTLS(tlsCfg.ClientTLS())
		}
		if err := testutil.HealthCheck(t, addr, grpc.WithTransportCredentials(creds)); err != nil {
			t.Fatalf("gRPC beside framed KV connections: %v", err)
		}
	})
}

// TestKVConnDialFunc: DialKV opens its connection with the dial function
// it is given.
func TestKVConnDialFunc(t *testing.T) {
	h := &echoHandler{}
	addr, _ := serveKV(t, h.handle, nil)
	var dialed []string
	dial := func(ctx context.Context, a string) (net.Conn, error) {
		dialed = append(dialed, a)
		var d net.Dialer
		return d.DialContext(ctx, "tcp", a)
	}
	ctx := testutil.Context(t, 5*time.Second)
	c, err := framed.DialKV(ctx, addr, nil, dial)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !slices.Equal(dialed, []string{addr}) {
		t.Fatalf("dial function called with %q, want once with %q", dialed, addr)
	}
	resp, _, err := c.Multi(ctx, kvGets("k"))
	if err != nil || !slices.Equal(kvValues(resp), []string{"k"}) {
		t.Fatalf("call on a connection from the dial function: %v, %v", resp, err)
	}

	failing := func(context.Context, string) (net.Conn, error) { return nil, errors.New("no route") }
	if c, err := framed.DialKV(ctx, addr, nil, failing); err == nil || errors.Is(err, framed.ErrKVUnsupported) {
		if c != nil {
			_ = c.Close()
		}
		t.Fatalf("dial with a failing dial function: %v, want its error, not framed.ErrKVUnsupported", err)
	}
}

// TestKVConnErrorAnswer: an error answer carries the handler's code,
// message and details, and the connection serves the next call.
func TestKVConnErrorAnswer(t *testing.T) {
	kvModes(t, func(t *testing.T, tlsCfg *tlsconfig.Config) {
		addr, _ := serveKV(t, func(_ context.Context, req *pb.MultiRequest) (*pb.MultiResponse, error) {
			if string(req.GetOps()[0].GetGet().GetKey()) == "busy" {
				st, err := status.New(codes.FailedPrecondition, "shard busy: x").WithDetails(&pb.Busy{RetryAfterMs: 7})
				if err != nil {
					return nil, err
				}
				return nil, st.Err()
			}
			return kvEcho(req), nil
		}, tlsCfg)
		c := dialKV(t, addr, tlsCfg)
		ctx := testutil.Context(t, 5*time.Second)
		resp, sent, err := c.Multi(ctx, kvGets("busy"))
		if err == nil || !sent || resp != nil {
			t.Fatalf("refused call: %v, sent %v, %v", resp, sent, err)
		}
		st, ok := status.FromError(err)
		if !ok || st.Code() != codes.FailedPrecondition || st.Message() != "shard busy: x" {
			t.Fatalf("refused call: %v, want FailedPrecondition %q", err, "shard busy: x")
		}
		if ds := st.Details(); len(ds) != 1 {
			t.Fatalf("details %v, want one Busy", ds)
		} else if b, ok := ds[0].(*pb.Busy); !ok || b.GetRetryAfterMs() != 7 {
			t.Fatalf("detail %v, want Busy{retry_after_ms: 7}", ds[0])
		}
		if c.Broken() {
			t.Fatal("an error answer broke the connection")
		}
		resp, sent, err = c.Multi(ctx, kvGets("after"))
		if err != nil || !sent || !slices.Equal(kvValues(resp), []string{"after"}) {
			t.Fatalf("call after an error answer: %v, sent %v, %v", resp, sent, err)
		}
	})
}

// TestKVConnDeadline: the handler's context has the call's deadline, and
// none when the call has none.
func TestKVConnDeadline(t *testing.T) {
	type seen struct {
		deadline time.Time
		ok       bool
	}
	got := make(chan seen, 1)
	addr, _ := serveKV(t, func(ctx context.Context, req *pb.MultiRequest) (*pb.MultiResponse, error) {
		d, ok := ctx.Deadline()
		got <- seen{d, ok}
		return kvEcho(req), nil
	}, nil)
	c := dialKV(t, addr, nil)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	want, _ := ctx.Deadline()
	if _, _, err := c.Multi(ctx, kvGets("a")); err != nil {
		t.Fatal(err)
	}
	s := <-got
	if !s.ok {
		t.Fatal("the handler's context has no deadline")
	}
	// The server's deadline is its time of reading plus the time left
	// when the client sent: the client's, plus the request's transit.
	if skew := s.deadline.Sub(want); skew < -50*time.Millisecond || skew > 500*time.Millisecond {
		t.Fatalf("handler's deadline %v off the client's by %v", s.deadline, skew)
	}

	if _, _, err := c.Multi(context.Background(), kvGets("b")); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s.ok {
		t.Fatalf("a call without a deadline reached the handler with one, %v", s.deadline)
	}
}

// TestKVConnUndecodable: a whole request whose protobuf does not decode is
// answered InvalidArgument without calling the handler, and the
// connection goes on.
func TestKVConnUndecodable(t *testing.T) {
	h := &echoHandler{}
	addr, _ := serveKV(t, h.handle, nil)
	conn, r := rawKVConn(t, addr)
	if _, err := conn.Write(kvRequestFrame([]byte{0xff, 0xff, 0xff}, 0)); err != nil {
		t.Fatal(err)
	}
	var buf []byte
	code, body, err := framed.ReadKVAnswer(r, &buf)
	if err != nil {
		t.Fatal(err)
	}
	if code != codes.InvalidArgument {
		t.Fatalf("undecodable request answered %v, want InvalidArgument", code)
	}
	if st := (&spb.Status{}); proto.Unmarshal(body, st) != nil || codes.Code(st.GetCode()) != codes.InvalidArgument || st.GetMessage() == "" {
		t.Fatalf("undecodable request answered with body %x, want an InvalidArgument google.rpc.Status", body)
	}
	if h.calls.Load() != 0 {
		t.Fatal("the handler was called for an undecodable request")
	}

	payload, err := proto.Marshal(kvGets("k1", "k2"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(kvRequestFrame(payload, 0)); err != nil {
		t.Fatal(err)
	}
	code, body, err = framed.ReadKVAnswer(r, &buf)
	if err != nil || code != codes.OK {
		t.Fatalf("valid request after an undecodable one: %v, %v", code, err)
	}
	resp := &pb.MultiResponse{}
	if err := proto.Unmarshal(body, resp); err != nil {
		t.Fatal(err)
	}
	if got := kvValues(resp); !slices.Equal(got, []string{"k1", "k2"}) {
		t.Fatalf("values %q, want k1 and k2", got)
	}
}

// TestKVConnChecksum: the server ends a connection whose request fails
// its checksum, without calling the handler.
func TestKVConnChecksum(t *testing.T) {
	h := &echoHandler{}
	addr, _ := serveKV(t, h.handle, nil)
	conn, r := rawKVConn(t, addr)
	payload, err := proto.Marshal(kvGets("k"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(kvRequestFrame(payload, 1)); err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if n, err := r.Read(b[:]); !errors.Is(err, io.EOF) {
		t.Fatalf("a corrupt request: read %d bytes, %v; want EOF (the server closed)", n, err)
	}
	if h.calls.Load() != 0 {
		t.Fatal("the handler was called for a corrupt request")
	}
}

// TestKVConnModeMismatch: a TLS client of a plaintext server and a
// plaintext client of a TLS server fail the dial at once with
// framed.ErrKVMode.
func TestKVConnModeMismatch(t *testing.T) {
	tlsCfg := devTLS(t)
	h := &echoHandler{}
	plainAddr, _ := serveKV(t, h.handle, nil)
	tlsAddr, _ := serveKV(t, h.handle, tlsCfg)
	for _, tc := range []struct {
		name   string
		addr   string
		client *tls.Config
	}{
		{"tls client, plaintext server", plainAddr, tlsCfg.ClientTLS()},
		{"plaintext client, tls server", tlsAddr, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			c, err := framed.DialKV(testutil.Context(t, 10*time.Second), tc.addr, tc.client, nil)
			if c != nil {
				_ = c.Close()
			}
			if !errors.Is(err, framed.ErrKVMode) {
				t.Fatalf("dial: %v, want framed.ErrKVMode", err)
			}
			if d := time.Since(start); d > framed.HandshakeTimeout/5 {
				t.Fatalf("the dial failed after %v", d)
			}
		})
	}
}

// TestKVConnUnsupported: a node whose listener does not demultiplex
// (plain gRPC) fails the dial with framed.ErrKVUnsupported, in plaintext
// and over TLS.
func TestKVConnUnsupported(t *testing.T) {
	kvModes(t, func(t *testing.T, tlsCfg *tlsconfig.Config) {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var opts []grpc.ServerOption
		if tlsCfg != nil {
			opts = append(opts, grpc.Creds(credentials.NewTLS(tlsCfg.ServerTLS())))
		}
		srv := grpc.NewServer(opts...)
		var wg sync.WaitGroup
		wg.Go(func() { _ = srv.Serve(lis) })
		defer func() { srv.Stop(); wg.Wait() }()
		start := time.Now()
		c, err := framed.DialKV(testutil.Context(t, 10*time.Second), lis.Addr().String(), tlsCfg.ClientTLS(), nil)
		if c != nil {
			_ = c.Close()
		}
		if !errors.Is(err, framed.ErrKVUnsupported) {
			t.Fatalf("dial to a plain gRPC server: %v, want framed.ErrKVUnsupported", err)
		}
		if d := time.Since(start); d > framed.HandshakeTimeout/5 {
			t.Fatalf("the dial failed after %v", d)
		}
	})
}

// TestKVConnClosedWhileIdle: a connection the server closed while it was
// idle fails its next call before sending it: Unavailable, not sent, and
// the handler is not called.
func TestKVConnClosedWhileIdle(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("PeerClosed sees a closed idle connection on Linux only")
	}
	kvModes(t, func(t *testing.T, tlsCfg *tlsconfig.Config) {
		h := &echoHandler{}
		addr, ks := serveKV(t, h.handle, tlsCfg)
		c := dialKV(t, addr, tlsCfg)
		ctx := testutil.Context(t, 5*time.Second)
		if _, _, err := c.Multi(ctx, kvGets("a")); err != nil {
			t.Fatal(err)
		}
		ks.Shutdown(ctx)
		var (
			sent bool
			err  error
		)
		testutil.Eventually(t, 5*time.Second, func() error {
			if _, sent, err = c.Multi(ctx, kvGets("b")); err == nil {
				return errors.New("the closed connection still answers")
			}
			return nil
		})
		if sent || status.Code(err) != codes.Unavailable {
			t.Fatalf("call on a connection closed while idle: sent %v, %v; want Unavailable, not sent", sent, err)
		}
		if !c.Broken() {
			t.Fatal("a connection closed by the server is not broken")
		}
		if got := h.calls.Load(); got != 1 {
			t.Fatalf("handler called %d times, want 1", got)
		}
	})
}

// TestKVConnCancel: a call whose context is canceled while the handler
// runs fails at once with Canceled, as one that was sent.
func TestKVConnCancel(t *testing.T) {
	started, release := make(chan struct{}, 1), make(chan struct{})
	addr, _ := serveKV(t, func(ctx context.Context, req *pb.MultiRequest) (*pb.MultiResponse, error) {
		started <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return kvEcho(req), nil
	}, nil)
	defer close(release)
	c := dialKV(t, addr, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		sent bool
		err  error
	}
	done := make(chan result, 1)
	go func() {
		_, sent, err := c.Multi(ctx, kvGets("a"))
		done <- result{sent, err}
	}()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler was not called")
	}
	cancel()
	var r result
	select {
	case r = <-done:
	case <-time.After(time.Second):
		t.Fatal("the call did not return within 1s of its cancel")
	}
	if status.Code(r.err) != codes.Canceled || !r.sent {
		t.Fatalf("a canceled call: sent %v, %v; want Canceled, sent", r.sent, r.err)
	}
	if !c.Broken() {
		t.Fatal("a canceled call left the connection usable")
	}
}

// TestKVConnShutdownGraceful: Shutdown refuses new connections, lets the
// call in progress finish with its context intact, and returns after it.
func TestKVConnShutdownGraceful(t *testing.T) {
	entered, release := make(chan struct{}, 1), make(chan struct{})
	ctxErr := make(chan error, 1)
	addr, ks := serveKV(t, func(ctx context.Context, req *pb.MultiRequest) (*pb.MultiResponse, error) {
		entered <- struct{}{}
		<-release
		ctxErr <- ctx.Err()
		return kvEcho(req), nil
	}, nil)
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	c := dialKV(t, addr, nil)
	ctx := testutil.Context(t, 10*time.Second)
	type answer struct {
		resp *pb.MultiResponse
		sent bool
		err  error
	}
	answered := make(chan answer, 1)
	go func() {
		resp, sent, err := c.Multi(ctx, kvGets("busy"))
		answered <- answer{resp, sent, err}
	}()
	select {
	case <-entered:
	case <-ctx.Done():
		t.Fatal("the handler was not called")
	}

	shutdownDone := make(chan struct{})
	go func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ks.Shutdown(sctx)
		close(shutdownDone)
	}()
	// Once Shutdown has begun, new connections are refused.
	testutil.Eventually(t, 5*time.Second, func() error {
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		nc, err := framed.DialKV(dctx, addr, nil, nil)
		if err != nil {
			return nil
		}
		_ = nc.Close()
		return errors.New("a new connection is still accepted")
	})
	select {
	case <-shutdownDone:
		t.Fatal("Shutdown returned while a call was in progress")
	default:
	}

	close(release)
	released = true
	var a answer
	select {
	case a = <-answered:
	case <-time.After(5 * time.Second):
		t.Fatal("the call in progress at Shutdown got no answer")
	}
	if a.err != nil || !a.sent || !slices.Equal(kvValues(a.resp), []string{"busy"}) {
		t.Fatalf("the call in progress at Shutdown: %v, sent %v, %v", a.resp, a.sent, a.err)
	}
	select {
	case <-shutdownDone:
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return after the last call")
	}
	if err := <-ctxErr; err != nil {
		t.Fatalf("the handler's context ended before it answered: %v", err)
	}
}

// TestKVConnShutdownTimeout: a Shutdown whose context ends cancels the
// calls in progress and returns.
func TestKVConnShutdownTimeout(t *testing.T) {
	entered := make(chan struct{}, 1)
	ctxErr := make(chan error, 1)
	addr, ks := serveKV(t, func(ctx context.Context, _ *pb.MultiRequest) (*pb.MultiResponse, error) {
		entered <- struct{}{}
		<-ctx.Done()
		ctxErr <- ctx.Err()
		return nil, status.FromContextError(ctx.Err()).Err()
	}, nil)
	c := dialKV(t, addr, nil)
	ctx := testutil.Context(t, 10*time.Second)
	answered := make(chan error, 1)
	go func() {
		_, _, err := c.Multi(ctx, kvGets("a"))
		answered <- err
	}()
	select {
	case <-entered:
	case <-ctx.Done():
		t.Fatal("the handler was not called")
	}
	sctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	shutdownDone := make(chan struct{})
	go func() {
		ks.Shutdown(sctx)
		close(shutdownDone)
	}()
	select {
	case <-shutdownDone:
	case <-time.After(2 * time.Second):
		t.Fatal("Shutdown with a 50ms context did not return within 2s")
	}
	select {
	case err := <-ctxErr:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("the handler's context ended with %v, want canceled", err)
		}
	default:
		t.Fatal("Shutdown returned while the handler still ran")
	}
	select {
	case err := <-answered:
		if err == nil {
			t.Fatal("the call cut by Shutdown got an answer")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the call cut by Shutdown did not return")
	}
}

// TestKVConnDeadlineExceeded: a call whose deadline passes before the
// server answers fails with DeadlineExceeded, as one that was sent.
func TestKVConnDeadlineExceeded(t *testing.T) {
	release := make(chan struct{})
	addr, _ := serveKV(t, func(_ context.Context, req *pb.MultiRequest) (*pb.MultiResponse, error) {
		<-release // answers late, whatever its deadline
		return kvEcho(req), nil
	}, nil)
	defer close(release)
	for i := range 20 {
		c := dialKV(t, addr, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		_, sent, err := c.Multi(ctx, kvGets("a"))
		cancel()
		if status.Code(err) != codes.DeadlineExceeded || !sent {
			t.Fatalf("call %d past its deadline: sent %v, %v; want DeadlineExceeded, sent", i, sent, err)
		}
	}
}

// TestKVConnCanceledAfterAnswer: a call that got its answer leaves the
// connection usable even when its context is canceled as the answer
// arrives, so the next call on it, with a context of its own, succeeds.
// The cancel follows the handler's answer after a few yields, a few more
// each time, so that it lands before, during or after the client's read;
// the test stops at the first call that fails, or once 100 calls were
// answered before their cancel (or after 1s).
func TestKVConnCanceledAfterAnswer(t *testing.T) {
	answering := make(chan struct{}, 1)
	addr, _ := serveKV(t, func(_ context.Context, req *pb.MultiRequest) (*pb.MultiResponse, error) {
		if string(req.GetOps()[0].GetGet().GetKey()) == "first" {
			answering <- struct{}{}
		}
		return kvEcho(req), nil
	}, nil)
	c := dialKV(t, addr, nil)
	answered, calls := 0, 0
	for start := time.Now(); answered < 100 && time.Since(start) < time.Second; calls++ {
		ctx, cancel := context.WithCancel(context.Background())
		yields := calls % 64
		go func() {
			<-answering
			for range yields {
				runtime.Gosched()
			}
			cancel()
		}()
		_, _, err := c.Multi(ctx, kvGets("first"))
		cancel()
		if err != nil { // canceled before its answer: a new connection
			if status.Code(err) != codes.Canceled {
				t.Fatalf("a call canceled as it is answered: %v, want its answer or Canceled", err)
			}
			_ = c.Close()
			c = dialKV(t, addr, nil)
			continue
		}
		answered++
		resp, sent, err := c.Multi(testutil.Context(t, 5*time.Second), kvGets("second"))
		if err != nil || !slices.Equal(kvValues(resp), []string{"second"}) {
			t.Fatalf("after %d answered calls canceled late, the next call on the connection: sent %v, %v", answered, sent, err)
		}
	}
	t.Logf("%d of %d calls answered before their cancel", answered, calls)
}
