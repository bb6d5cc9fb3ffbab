package router

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/flotilla-kv/flotilla/internal/testutil"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// Framed KV connections against real shardnodes: the calls go framed, and
// a framed call whose answer is lost is retried exactly once, as a gRPC
// call's is (TestIntegrationExactlyOnceAcrossLostAnswers).

// TestFramedCalls: a default Client sends its KV requests over framed
// connections (Stats.FramedRPCs), single and coalesced, with the results
// of gRPC; one with DisableFramedKV sends none.
func TestFramedCalls(t *testing.T) {
	c := newCluster(t, 3, 2)
	ctx := testutil.Context(t, 30*time.Second)
	r := c.client(nil)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for w := range 32 {
		wg.Go(func() {
			k := c.keyIn(1+w%2, fmt.Sprint(w))
			if err := r.Put(ctx, k, []byte(fmt.Sprint("v", w))); err != nil {
				errs <- err
				return
			}
			v, found, err := r.Get(ctx, k)
			if err != nil || !found || string(v) != fmt.Sprint("v", w) {
				errs <- fmt.Errorf("get %q = %q, %v, %v", k, v, found, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if _, _, err := r.Get(ctx, c.keyIn(1, "missing")); err != nil {
		t.Fatal(err)
	}
	st := r.Stats()
	if st.FramedRPCs == 0 || st.FramedRPCs > st.RPCs || st.FramedFallbacks != 0 {
		t.Fatalf("framed RPCs %d of %d, fallbacks %d: the calls did not go framed", st.FramedRPCs, st.RPCs, st.FramedFallbacks)
	}

	off := c.client(func(cfg *Config) { cfg.DisableFramedKV = true })
	if _, _, err := off.Get(ctx, c.keyIn(1, "0")); err != nil {
		t.Fatal(err)
	}
	if st := off.Stats(); st.FramedRPCs != 0 || st.RPCs == 0 {
		t.Fatalf("DisableFramedKV: %d framed RPCs of %d", st.FramedRPCs, st.RPCs)
	}
}

// TestFramedLostAnswers: the nodes are reached through proxies that cut
// a framed connection at every other answer, after the request reached
// the node and before the answer came back. Each such call failed after it may
// have applied, so the Client must retry it with the same ClientID and
// Seq, and the node must answer the retry from its record: every
// CompareAndSwap increment swaps exactly once.
func TestFramedLostAnswers(t *testing.T) {
	c := newCluster(t, 3, 1)
	r, lossy := c.proxiedClient(2, nil)
	ctx := testutil.Context(t, 60*time.Second)
	key := []byte("counter")
	const increments = 24
	casIncrements(ctx, t, r, key, increments)
	var cut int64
	for _, p := range lossy {
		cut += p.cut.Load()
	}
	st := r.Stats()
	// Half of each proxy's answers are cut; the retry after a cut may go
	// to a follower first, through another proxy, so fewer than half of
	// the increments lose an answer.
	if cut < increments/4 || st.Retries[RetryUnavailable]+st.Retries[RetryAmbiguous] < uint64(cut) || st.FramedRPCs == 0 {
		t.Fatalf("%d answers cut, %d retries (unavailable %d, ambiguous %d), %d framed RPCs: the losses did not happen as planned",
			cut, st.TotalRetries(), st.Retries[RetryUnavailable], st.Retries[RetryAmbiguous], st.FramedRPCs)
	}
}

// TestFramedLostAnswerIsAmbiguous: a write whose every framed answer is
// lost fails, and the failure says it may have applied (ErrAmbiguous),
// since the node did apply it; a framed call that may have reached the
// node must say so, as a gRPC call's stats handler does.
func TestFramedLostAnswerIsAmbiguous(t *testing.T) {
	c := newCluster(t, 3, 1)
	c.leader(1) // the first attempt goes to the leader, which applies it
	r, lossy := c.proxiedClient(1, func(cfg *Config) {
		cfg.Timeout = 3 * time.Second
		cfg.MaxRetries = 3
	})
	ctx := testutil.Context(t, 30*time.Second)
	key := []byte("lost")
	err := r.Put(ctx, key, []byte("v"))
	if err == nil {
		t.Fatal("a put whose every answer was lost succeeded")
	}
	if !errors.Is(err, ErrAmbiguous) {
		t.Fatalf("a put whose answers were lost after it applied failed with %v, which does not wrap ErrAmbiguous", err)
	}
	var cut int64
	for _, p := range lossy {
		cut += p.cut.Load()
	}
	if cut == 0 {
		t.Fatal("no answer was cut")
	}
	// It did apply: a Client that reaches the nodes directly reads it.
	direct := c.client(nil)
	v, found, err := direct.Get(ctx, key)
	if err != nil || !found || string(v) != "v" {
		t.Fatalf("get %q = %q, %v, %v; the lost put should have applied", key, v, found, err)
	}
}

// proxiedClient returns a Client that reaches every node through a
// lossyProxy cutting every cutEvery-th framed answer, and the proxies.
func (c *cluster) proxiedClient(cutEvery int64, tweak func(*Config)) (*Client, []*lossyProxy) {
	t := c.t
	t.Helper()
	proxies := map[uint64]string{}
	var lossy []*lossyProxy
	for id, n := range c.f.Nodes {
		p := newLossyProxy(t, n.Addr, cutEvery)
		proxies[id] = p.addr()
		lossy = append(lossy, p)
	}
	conn, err := grpc.NewClient(c.pl.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	r := c.client(func(cfg *Config) {
		cfg.PlacementAddresses = nil
		cfg.RouteSource = proxiedSource{pl: pb.NewPlacementClient(conn), addrs: proxies}
		if tweak != nil {
			tweak(cfg)
		}
	})
	return r, lossy
}

// proxiedSource serves the fake placement's routes with every node's
// address replaced by its proxy's.
type proxiedSource struct {
	pl    pb.PlacementClient
	addrs map[uint64]string
}

func (s proxiedSource) rewrite(r *pb.Route) *pb.Route {
	for id := range r.GetAddresses() {
		r.Addresses[id] = s.addrs[id]
	}
	return r
}

func (s proxiedSource) GetRoute(ctx context.Context, key []byte, neighbours int) (*pb.Route, []*pb.Route, error) {
	resp, err := s.pl.GetRoute(ctx, &pb.GetRouteRequest{Key: key, Neighbours: uint32(neighbours)})
	if err != nil {
		return nil, nil, err
	}
	for _, n := range resp.GetNeighbours() {
		s.rewrite(n)
	}
	return s.rewrite(resp.GetRoute()), resp.GetNeighbours(), nil
}

func (s proxiedSource) ScanRoutes(ctx context.Context, start, end []byte, limit int) ([]*pb.Route, error) {
	resp, err := s.pl.ScanRoutes(ctx, &pb.ScanRoutesRequest{Start: start, End: end, Limit: uint32(limit)})
	if err != nil {
		return nil, err
	}
	for _, r := range resp.GetRoutes() {
		s.rewrite(r)
	}
	return resp.GetRoutes(), nil
}

// lossyProxy forwards the TCP connections it accepts to target. A framed
// KV connection (told by the first bytes of rpc's wire format) has its
// handshake passed through, then its answers one by one; every
// cutEvery-th answer of the proxy's framed connections is not passed on,
// but the connection cut when it arrives from the node, which has served
// the request.
type lossyProxy struct {
	lis    net.Listener
	target string
	// cutEvery: every cutEvery-th answer is cut.
	cutEvery int64
	answers  atomic.Int64
	cut      atomic.Int64
	wg       sync.WaitGroup
	closing  chan struct{}
}

// framedMagicPrefix starts a framed KV connection (rpc's kvConnMagic).
var framedMagicPrefix = []byte("FLKVM")

// framedHandshakeBytes is what the node sends on a plaintext framed KV
// connection before its first answer: the verdict and the acceptance.
const framedHandshakeBytes = 1 + 8

func newLossyProxy(t *testing.T, target string, cutEvery int64) *lossyProxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &lossyProxy{lis: lis, target: target, cutEvery: cutEvery, closing: make(chan struct{})}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		close(p.closing)
		_ = lis.Close()
		p.wg.Wait()
	})
	return p
}

func (p *lossyProxy) addr() string { return p.lis.Addr().String() }

func (p *lossyProxy) accept() {
	for {
		c, err := p.lis.Accept()
		if err != nil {
			return
		}
		p.wg.Go(func() { p.serve(c) })
	}
}

// serve forwards one connection until either side ends it, or the proxy
// closes.
func (p *lossyProxy) serve(client net.Conn) {
	defer client.Close()
	node, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer node.Close()
	finished := make(chan struct{})
	defer close(finished)
	go func() {
		select {
		case <-p.closing:
			_ = client.Close()
			_ = node.Close()
		case <-finished:
		}
	}()
	head := make([]byte, len(framedMagicPrefix))
	if _, err := io.ReadFull(client, head); err != nil {
		return
	}
	if _, err := node.Write(head); err != nil {
		return
	}
	framed := bytes.Equal(head, framedMagicPrefix)
	done := make(chan struct{}, 2)
	go func() {
		_, _ = io.Copy(node, client)
		_ = node.Close()
		done <- struct{}{}
	}()
	go func() {
		defer func() { done <- struct{}{} }()
		defer client.Close()
		if !framed {
			_, _ = io.Copy(client, node)
			return
		}
		if _, err := io.CopyN(client, node, framedHandshakeBytes); err != nil {
			return
		}
		for {
			// An answer: body length (4 bytes) and code (2), the body,
			// the checksum (4).
			var h [6]byte
			if _, err := io.ReadFull(node, h[:]); err != nil {
				return
			}
			if p.answers.Add(1)%p.cutEvery == 0 {
				// The node has answered: the request was served. Cut.
				p.cut.Add(1)
				_ = node.Close()
				return
			}
			if _, err := client.Write(h[:]); err != nil {
				return
			}
			if _, err := io.CopyN(client, node, int64(binary.BigEndian.Uint32(h[:4]))+4); err != nil {
				return
			}
		}
	}()
	<-done
	<-done
}
