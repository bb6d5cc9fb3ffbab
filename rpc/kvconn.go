package rpc

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/internal/framed"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// The server side of framed KV connections: the router's Get, Put,
// Delete, CompareAndSwap and Multi calls, each as one request frame and
// one answer frame, read, served and answered by the connection's one
// goroutine (internal/framed/kv.go has the wire format and the client).
// A shardnode serves them on its gRPC port (KVFrameServer.Demux) through
// the same interceptor as its gRPC calls, so its request metrics count
// them alike.

// KVFrameHandler serves one Multi call of a framed KV connection, as the
// KV service's Multi does over gRPC with the server's interceptors; its
// error's full status goes back to the client. It is called from each
// connection's goroutine, so from several goroutines at once.
type KVFrameHandler func(ctx context.Context, req *pb.MultiRequest) (*pb.MultiResponse, error)

// KVFrameServer serves framed KV connections (internal/framed) with a
// KVFrameHandler: NewKVFrameServer, then Demux on the node's listener,
// and Shutdown or Close when the node stops. Its methods may be called
// from any goroutine.
type KVFrameServer struct {
	handle KVFrameHandler
	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     struct {
		sync.Mutex
		// conns maps each connection served to whether a call is in
		// progress on it; nil once stopping (Shutdown or Close).
		conns map[net.Conn]bool
	}
}

// NewKVFrameServer returns a server answering with h.
func NewKVFrameServer(h KVFrameHandler) *KVFrameServer {
	s := &KVFrameServer{handle: h}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.mu.conns = make(map[net.Conn]bool)
	return s
}

// Shutdown stops the server gracefully: new connections are refused
// (closed after their magic), connections waiting for a call are closed,
// and those with a call in progress close once it is answered. It
// returns when every connection's goroutine is done, or when ctx ends,
// after Close. A call whose request was on its way while its idle
// connection closed fails on the client as one that may have been sent,
// as a gRPC call does whose connection breaks.
func (s *KVFrameServer) Shutdown(ctx context.Context) {
	s.mu.Lock()
	conns := s.mu.conns
	s.mu.conns = nil
	s.mu.Unlock()
	for c, busy := range conns {
		if !busy {
			_ = c.Close()
		}
	}
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.closeAll(conns)
		<-done
	}
	s.cancel()
}

// Close ends the calls in progress (their contexts are canceled), closes
// every framed KV connection and waits for their goroutines; later ones
// are refused.
func (s *KVFrameServer) Close() {
	s.mu.Lock()
	conns := s.mu.conns
	s.mu.conns = nil
	s.mu.Unlock()
	s.closeAll(conns)
	s.wg.Wait()
}

// closeAll cancels the calls in progress and closes conns.
func (s *KVFrameServer) closeAll(conns map[net.Conn]bool) {
	s.cancel()
	for c := range conns {
		_ = c.Close()
	}
}

// track registers c, whose goroutine then runs until untrack; false once
// the server is stopping.
func (s *KVFrameServer) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.conns == nil {
		return false
	}
	s.mu.conns[c] = false
	s.wg.Add(1)
	return true
}

// untrack closes and forgets c.
func (s *KVFrameServer) untrack(c net.Conn) {
	_ = c.Close()
	s.mu.Lock()
	if s.mu.conns != nil {
		delete(s.mu.conns, c)
	}
	s.mu.Unlock()
	s.wg.Done()
}

// setBusy records whether a call is in progress on c, and reports
// whether c may go on: false once the server is stopping, when c is to
// close after its call (busy false).
func (s *KVFrameServer) setBusy(c net.Conn, busy bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.conns == nil {
		return busy // a request read is served even while stopping
	}
	s.mu.conns[c] = busy
	return true
}

// serve serves one connection whose magic was read: the mode and its
// verdict, TLS when the server runs with it (tlsCfg), the acceptance,
// then calls until the connection ends or the server stops.
func (s *KVFrameServer) serve(raw net.Conn, tlsCfg *tls.Config) {
	if !s.track(raw) {
		_ = raw.Close()
		return
	}
	defer s.untrack(raw)
	conn, ok := framed.AcceptKV(raw, tlsCfg)
	if !ok {
		return
	}
	r := bufio.NewReaderSize(conn, 16<<10)
	var in, out []byte
	for {
		req, timeout, err := framed.ReadKVRequest(r, &in)
		if err != nil || !s.setBusy(raw, true) {
			return
		}
		var (
			resp *pb.MultiResponse
			herr error
		)
		if req == nil {
			herr = status.Error(codes.InvalidArgument, "rpc: a framed KV request that is not a MultiRequest")
		} else {
			ctx, cancel := s.ctx, context.CancelFunc(func() {})
			if timeout > 0 {
				ctx, cancel = context.WithTimeout(ctx, timeout)
			}
			resp, herr = s.handle(ctx, req)
			cancel()
		}
		if out, err = framed.AppendKVAnswer(out[:0], resp, herr); err != nil {
			out, _ = framed.AppendKVAnswer(out[:0], nil, status.Errorf(codes.Internal, "rpc: encoding a Multi answer: %v", err))
		}
		if _, err := conn.Write(out); err != nil || !s.setBusy(raw, false) {
			return
		}
		if cap(out) > 1<<20 {
			out = nil // one large answer does not pin its buffer
		}
		if cap(in) > 1<<20 {
			in = nil
		}
	}
}
