package rpc

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/flotilla-kv/flotilla/internal/serve"
	"github.com/flotilla-kv/flotilla/internal/testutil"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// TestRequestSizeLimit: a request larger than serve.MaxMessageBytes is
// refused with ResourceExhausted, the server keeps serving, and nothing
// was written.
func TestRequestSizeLimit(t *testing.T) {
	s := newStack(t, stackConfig{})
	before := s.data()
	_, err := s.kv().Put(context.Background(), &pb.PutRequest{Header: &pb.RequestHeader{ShardId: 1}, Key: []byte("big"),
		Value: make([]byte, serve.MaxMessageBytes+1)})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(status.Convert(err).Message(), "larger than max") {
		t.Fatalf("oversized request: %v, want ResourceExhausted naming the size", err)
	}
	if _, err := s.kv().Put(context.Background(), &pb.PutRequest{Header: &pb.RequestHeader{ShardId: 1}, Key: []byte("small"), Value: []byte("v")}); err != nil {
		t.Fatalf("the server stopped serving after an oversized request: %v", err)
	}
	after := s.data()
	delete(after, "small")
	if !maps.Equal(before, after) {
		t.Fatalf("an oversized request changed data: %v -> %v", before, after)
	}
}

// TestConcurrentRequestsPerConnection: with a limit of 4 requests in
// flight per connection, a fifth on the same connection is refused at
// once with ResourceExhausted and a Busy detail, another connection is
// not affected, and the connection is served again once a request ends.
func TestConcurrentRequestsPerConnection(t *testing.T) {
	const limit = 4
	s := newStack(t, stackConfig{serverOptions: serve.ServerOptions(serve.RequestLimitOptions(limit)...)})
	raft := pb.NewRaftClient(s.conn)
	received := s.raftSrv.stats.received.Load()
	var cancels []context.CancelFunc
	for range limit {
		ctx, cancel := context.WithCancel(context.Background())
		cancels = append(cancels, cancel)
		st, err := raft.Stream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// One message for a group the node does not host: the engine drops
		// it, and the server counts it once the stream's handler runs.
		if err := st.Send(&pb.RaftBatch{FromNode: 2, ToNode: 1, Messages: []*pb.RaftMessage{{
			Group: 99, ToNode: 1, FromNode: 2,
			Msg: &raftpb.Message{Type: raftpb.MsgHeartbeat.Enum(), To: proto.Uint64(1), From: proto.Uint64(2)},
		}}}); err != nil {
			t.Fatal(err)
		}
	}
	// Every stream holds its slot before the first request beyond the
	// limit is sent; a request racing a stream's start could take that
	// stream's slot instead (and the stream would be the one refused).
	testutil.Eventually(t, 10*time.Second, func() error {
		if got := s.raftSrv.stats.received.Load(); got < received+limit {
			return fmt.Errorf("%d of %d streams served", got-received, limit)
		}
		return nil
	})
	defer func() {
		for _, c := range cancels {
			c()
		}
	}()
	get := func(c pb.KVClient) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := c.Get(ctx, &pb.GetRequest{Header: &pb.RequestHeader{ShardId: 1}, Key: []byte("seed")})
		return err
	}
	var refused error
	testutil.Eventually(t, 10*time.Second, func() error {
		refused = get(s.kv())
		if status.Code(refused) != codes.ResourceExhausted {
			return fmt.Errorf("request beyond the limit: %v", refused)
		}
		return nil
	})
	st := status.Convert(refused)
	busy := false
	for _, d := range st.Details() {
		if b, ok := d.(*pb.Busy); ok && b.GetRetryAfterMs() > 0 {
			busy = true
		}
	}
	if !busy || !strings.Contains(st.Message(), "too many requests") {
		t.Fatalf("refusal %v lacks its Busy detail or reason", st)
	}
	// Another connection has its own budget.
	other, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := get(pb.NewKVClient(other)); err != nil {
		t.Fatalf("a second connection was refused too: %v", err)
	}
	// One request ends: the first connection is served again.
	cancels[0]()
	testutil.Eventually(t, 10*time.Second, func() error { return get(s.kv()) })
}

// TestSnapshotMemoryLimit: snapshot bodies buffered by the receiver are
// bounded across concurrent transfers; a chunk beyond the bound fails its
// stream with ResourceExhausted, and the memory of a finished transfer is
// released.
func TestSnapshotMemoryLimit(t *testing.T) {
	const budget = 1 << 20
	s := newStack(t, stackConfig{transport: TransportConfig{MaxSnapshotBufferBytes: budget, MaxConcurrentSnapshots: 4}})
	raft := pb.NewRaftClient(s.conn)
	body := bytes.Repeat([]byte("s"), 600<<10)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// A holds 600 KiB and does not finish.
	a, err := raft.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	chunks := snapshotChunks(body, 300<<10, 99)
	for _, c := range chunks[:2] {
		c.Last = false
		if err := a.Send(c); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if n := s.raftSrv.buffered.Load(); n != int64(len(body)) {
			return fmt.Errorf("%d bytes buffered, want %d", n, len(body))
		}
		return nil
	})
	// B would need 600 KiB more: refused.
	b, err := raft.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range snapshotChunks(body, 300<<10, 99) {
		if err := b.Send(c); err != nil {
			break // the server refused mid-stream; CloseAndRecv reports why
		}
	}
	_, err = b.CloseAndRecv()
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(status.Convert(err).Message(), "snapshot buffers") {
		t.Fatalf("snapshot beyond the memory bound: %v, want ResourceExhausted", err)
	}
	// A ends (cut short): its memory is released.
	_, err = a.CloseAndRecv()
	if status.Code(err) != codes.DataLoss {
		t.Fatalf("a snapshot cut short: %v, want DataLoss", err)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if n := s.raftSrv.buffered.Load(); n != 0 {
			return fmt.Errorf("%d bytes still accounted", n)
		}
		return nil
	})
	// Now the same transfer fits and reaches the engine (which refuses
	// it: the group is unknown).
	c, err := raft.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range snapshotChunks(body, 300<<10, 99) {
		if err := c.Send(ch); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := c.CloseAndRecv()
	if err != nil || resp.GetAccepted() {
		t.Fatalf("snapshot within the bound: %v, %v; want it to reach the engine and be refused there", resp, err)
	}
	// One snapshot alone larger than the bound is refused too.
	d, err := raft.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range snapshotChunks(bytes.Repeat([]byte("x"), 2*budget), 256<<10, 99) {
		if err := d.Send(ch); err != nil {
			break
		}
	}
	if _, err := d.CloseAndRecv(); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("snapshot larger than the bound: %v, want ResourceExhausted", err)
	}
}
