package rpc

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/flotilla-kv/flotilla/internal/pebbleopts"
	"github.com/flotilla-kv/flotilla/internal/serve"
	"github.com/flotilla-kv/flotilla/internal/testutil"
	"github.com/flotilla-kv/flotilla/internal/tlsconfig"
	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/placement/tso"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
	"github.com/flotilla-kv/flotilla/shard"
)

// fleetNode is one node of an in-process fleet that replicates over real
// transports on loopback.
type fleetNode struct {
	id        multiraft.NodeID
	cfg       fleetNodeConfig
	tls       *tlsconfig.Config
	addr      string
	engine    *multiraft.Engine
	store     *shard.Store
	transport *Transport
	kvSrv     *KVServer
	raftSrv   *RaftServer
	srv       *grpc.Server
}

type fleetNodeConfig struct {
	// framed: the node's transport sends framed connections and its
	// listener demultiplexes them.
	framed bool
	// grpcRaft registers the Raft gRPC service (the stream).
	grpcRaft bool
}

// newFleet starts one node per config, each hosting a replica of shard 1,
// with mutual TLS when tlsDir is set, and waits for a leader that serves
// writes.
func newFleet(t *testing.T, tlsDir string, cfgs ...fleetNodeConfig) []*fleetNode {
	t.Helper()
	resolver := StaticResolver{}
	var ca *tlsconfig.DevCA
	if tlsDir != "" {
		var err error
		if ca, err = tlsconfig.NewDevCA(time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	var nodes []*fleetNode
	var lis []net.Listener
	desc := shard.Descriptor{ShardID: 1, Epoch: shard.Epoch{ConfVer: 1, Version: 1}}
	for i, c := range cfgs {
		n := &fleetNode{id: multiraft.NodeID(i + 1), cfg: c}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		n.addr = l.Addr().String()
		resolver[n.id] = n.addr
		if ca != nil {
			files, err := tlsconfig.WriteDevFiles(ca, tlsDir, fmt.Sprintf("node-%d", n.id), tlsconfig.DefaultHosts, false)
			if err != nil {
				t.Fatal(err)
			}
			if n.tls, err = tlsconfig.Load(files); err != nil {
				t.Fatal(err)
			}
		}
		desc.Replicas = append(desc.Replicas, multiraft.Replica{ReplicaID: multiraft.ReplicaID(101 + i), NodeID: n.id})
		nodes = append(nodes, n)
		lis = append(lis, l)
	}
	for i, n := range nodes {
		n.start(t, resolver, lis[i])
		if err := n.store.CreateShard(desc, multiraft.ReplicaID(101+i)); err != nil {
			t.Fatal(err)
		}
	}
	fleetPut(t, nodes, "seed", "1")
	return nodes
}

// start opens the node's engine over a fresh in-memory Pebble and serves
// it on l.
func (n *fleetNode) start(t *testing.T, resolver Resolver, l net.Listener) {
	t.Helper()
	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem(), Logger: quietPebble{}, Comparer: pebbleopts.Comparer})
	if err != nil {
		t.Fatal(err)
	}
	oracle := tso.Local()
	if n.store, err = shard.NewStore(shard.Config{}, oracle); err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	conns := &serve.ConnPool{Creds: n.tls.ClientCredentials()}
	tcfg := TransportConfig{NodeID: n.id, Resolver: resolver, Dial: conns.Dial, Logger: logger,
		Framed: n.cfg.framed, ReconnectBackoff: 10 * time.Millisecond, MaxReconnectBackoff: 100 * time.Millisecond}
	var serverTLS *tls.Config
	if n.tls.Enabled() {
		tcfg.FramedTLS = n.tls.ClientTLS()
		serverTLS = n.tls.ServerTLS()
	}
	if err := tcfg.Validate(); err != nil {
		t.Fatal(err)
	}
	n.transport = NewTransport(tcfg)
	n.engine, err = multiraft.Open(multiraft.Config{
		NodeID: n.id, DB: db, Transport: n.transport, NewStateMachine: n.store.StateMachineFunc(), Logger: logger, Workers: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	n.store.SetEngine(n.engine)
	n.transport.SetReporter(n.engine)
	n.kvSrv = NewKVServer(n.store, StaticResolver{}, nil)
	n.serve(l, serverTLS)
	stop := make(chan struct{})
	go func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				n.engine.Tick()
			case <-stop:
				return
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		n.raftSrv.Close()
		n.srv.Stop()
		n.transport.Close()
		_ = n.engine.Close()
		conns.Close()
		_ = oracle.Close()
		_ = db.Close()
	})
}

// serve starts a Raft server over the node's engine and a gRPC server on
// l, demultiplexed when the node is framed.
func (n *fleetNode) serve(l net.Listener, serverTLS *tls.Config) {
	n.raftSrv = NewRaftServer(n.id, n.engine, n.transport)
	n.srv = grpc.NewServer(serve.ServerOptions(n.tls.ServerOption())...)
	pb.RegisterKVServer(n.srv, n.kvSrv)
	if n.cfg.grpcRaft {
		pb.RegisterRaftServer(n.srv, n.raftSrv)
	}
	if n.cfg.framed {
		l = n.raftSrv.Demux(l, serverTLS)
	}
	go func() { _ = n.srv.Serve(l) }()
}

// fleetPut writes key on whichever node leads shard 1.
func fleetPut(t *testing.T, nodes []*fleetNode, key, value string) {
	t.Helper()
	ctx := testutil.Context(t, 20*time.Second)
	testutil.Eventually(t, 20*time.Second, func() error {
		var errs []string
		for _, n := range nodes {
			_, err := n.kvSrv.Put(ctx, &pb.PutRequest{Header: &pb.RequestHeader{ShardId: 1}, Key: []byte(key), Value: []byte(value)})
			if err == nil {
				return nil
			}
			errs = append(errs, fmt.Sprintf("node %d: %v", n.id, err))
		}
		return fmt.Errorf("no node took the write of %q: %s", key, strings.Join(errs, "; "))
	})
}

// awaitEverywhere waits until every node's replica applied key = value.
func awaitEverywhere(t *testing.T, nodes []*fleetNode, key, value string) {
	t.Helper()
	ctx := testutil.Context(t, 20*time.Second)
	testutil.Eventually(t, 20*time.Second, func() error {
		for _, n := range nodes {
			resp, err := n.kvSrv.Get(ctx, &pb.GetRequest{Header: &pb.RequestHeader{ShardId: 1, Consistency: pb.ReadConsistency_READ_CONSISTENCY_STALE}, Key: []byte(key)})
			if err != nil {
				return fmt.Errorf("node %d: %w", n.id, err)
			}
			if got := string(resp.GetValue()); got != value {
				return fmt.Errorf("node %d has %q = %q, want %q; %s", n.id, key, got, value, fleetState(ctx, nodes))
			}
		}
		return nil
	})
}

// fleetState describes each node's replica of shard 1 and its transport,
// for a test that waits in vain for a node to catch up.
func fleetState(ctx context.Context, nodes []*fleetNode) string {
	var b strings.Builder
	for _, n := range nodes {
		st, err := n.engine.Status(ctx, 1)
		stats := n.transport.Stats.Load()
		fmt.Fprintf(&b, "[node %d: term %d leader %d commit %d applied %d last %d quiesced %v progress %+v (%v); messages sent %d received %d dropped %d, stream failures %d] ",
			n.id, st.Term, st.Leader, st.Commit, st.Applied, st.LastIndex, st.Quiesced, st.Progress, err,
			stats.Messages, stats.Received, stats.Dropped, stats.StreamFailures)
	}
	return b.String()
}

// TestFramedFleetReplicates: a fleet whose Raft messages travel only on
// framed connections (no node registers the Raft gRPC service, so nothing
// could fall back to it) elects a leader and replicates, in plaintext and
// with mutual TLS, and every batch is counted.
func TestFramedFleetReplicates(t *testing.T) {
	for _, withTLS := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", withTLS), func(t *testing.T) {
			dir := ""
			if withTLS {
				dir = t.TempDir()
			}
			c := fleetNodeConfig{framed: true}
			nodes := newFleet(t, dir, c, c, c)
			for i := range 20 {
				fleetPut(t, nodes, fmt.Sprintf("k%d", i), fmt.Sprint(i))
			}
			awaitEverywhere(t, nodes, "k19", "19")
			for _, n := range nodes {
				s := n.transport.Stats.Load()
				if s.Batches == 0 || s.Messages < s.Batches || s.Received == 0 || s.Bytes == 0 {
					t.Errorf("node %d counted %+v", n.id, s)
				}
			}
		})
	}
}

// TestFramedFallsBackToGRPCStream: a node whose listener is not
// demultiplexed (a build before framed connections) closes a framed
// connection unanswered; its peers then send it batches on the gRPC
// stream, and it replicates like the others. With TLS the old node's
// server fails the handshake instead, which must fall back too.
func TestFramedFallsBackToGRPCStream(t *testing.T) {
	for _, withTLS := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", withTLS), func(t *testing.T) {
			dir := ""
			if withTLS {
				dir = t.TempDir()
			}
			framed := fleetNodeConfig{framed: true, grpcRaft: true}
			old := fleetNodeConfig{grpcRaft: true}
			nodes := newFleet(t, dir, framed, framed, old)
			fleetPut(t, nodes, "k", "v")
			awaitEverywhere(t, nodes, "k", "v")
		})
	}
}

// TestFramedPeerRestartReconnects: when a peer's server goes away and
// comes back on the same address, the senders towards it see their
// connections fail, redial with backoff and replicate to it again.
func TestFramedPeerRestartReconnects(t *testing.T) {
	c := fleetNodeConfig{framed: true}
	nodes := newFleet(t, "", c, c, c)
	n3 := nodes[2]
	failures := func() uint64 {
		return nodes[0].transport.Stats.Load().StreamFailures + nodes[1].transport.Stats.Load().StreamFailures
	}
	before := failures()

	n3.raftSrv.Close()
	n3.srv.Stop()
	testutil.Eventually(t, 10*time.Second, func() error {
		if failures() == before {
			return fmt.Errorf("no sender noticed node 3's server stopping")
		}
		return nil
	})
	// Writes commit on the two others meanwhile; node 3 misses them.
	fleetPut(t, nodes[:2], "during", "1")

	l, err := net.Listen("tcp", n3.addr)
	if err != nil {
		t.Fatal(err)
	}
	n3.serve(l, nil)
	fleetPut(t, nodes, "after", "2")
	awaitEverywhere(t, nodes, "during", "1")
	awaitEverywhere(t, nodes, "after", "2")
}

// TestFrameRoundTrip: a frame decodes into the messages encoded, and a
// truncated or padded payload is refused, never half-delivered.
func TestFrameRoundTrip(t *testing.T) {
	msgs := []multiraft.Message{
		{Group: 7, ToNode: 2, FromNode: 1, Msg: &raftpb.Message{
			Type: raftpb.MsgApp.Enum(), To: proto.Uint64(12), From: proto.Uint64(11), Term: proto.Uint64(3),
			Entries: []*raftpb.Entry{{Term: proto.Uint64(3), Index: proto.Uint64(9), Data: []byte("payload")}},
		}},
		{Group: 1 << 40, ToNode: 2, FromNode: 1, Quiesce: true, Msg: &raftpb.Message{Type: raftpb.MsgHeartbeat.Enum(), To: proto.Uint64(5)}},
	}
	buf, dropped := appendFrame([]byte("prefix"), msgs)
	if dropped || !bytes.HasPrefix(buf, []byte("prefix")) {
		t.Fatalf("appendFrame dropped=%v or lost the prefix", dropped)
	}
	payload := buf[len("prefix")+frameHeaderBytes:]
	var d frameDecoder
	got, err := d.decode(bytes.Clone(payload))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(msgs) {
		t.Fatalf("decoded %d messages, want %d", len(got), len(msgs))
	}
	for i := range msgs {
		w, g := msgs[i], got[i]
		if g.Group != w.Group || g.ToNode != w.ToNode || g.FromNode != w.FromNode || g.Quiesce != w.Quiesce || !proto.Equal(g.Msg, w.Msg) {
			t.Errorf("message %d: got %+v (%v), want %+v (%v)", i, g, g.Msg, w, w.Msg)
		}
	}
	for _, bad := range [][]byte{payload[:len(payload)-1], append(bytes.Clone(payload), 0), payload[:1], {0xff, 0xff, 0xff, 0xff, 0x0f}} {
		if _, err := d.decode(bad); err == nil {
			t.Errorf("decode(%x) accepted a bad payload", bad)
		}
	}
}

// silentReporter records NodeDown calls.
type silentReporter struct{ down chan multiraft.NodeID }

func (silentReporter) ReportUnreachable(multiraft.GroupID, multiraft.ReplicaID) {}
func (silentReporter) ReportSnapshot(multiraft.Message, error)                  {}
func (r silentReporter) NodeDown(n multiraft.NodeID) {
	select {
	case r.down <- n:
	default:
	}
}

// TestFramedSilentPeerIsDropped: a peer that accepted the connection and
// then says nothing (no pings: a frozen process, a partition that keeps
// the socket open) is taken for down within connSilenceTimeout, as the
// gRPC stream's keepalive did, so the engine wakes the groups it led.
func TestFramedSilentPeerIsDropped(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			head := make([]byte, len(raftConnMagic)+helloBytes)
			if _, err := io.ReadFull(c, head); err != nil {
				_ = c.Close()
				continue
			}
			_, _ = io.WriteString(c, connAccepted)
			accepted <- c // and never a ping
		}
	}()
	tr := NewTransport(TransportConfig{NodeID: 1, Resolver: StaticResolver{2: l.Addr().String()},
		Dial: (&serve.ConnPool{}).Dial, Framed: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	defer tr.Close()
	r := silentReporter{down: make(chan multiraft.NodeID, 1)}
	tr.SetReporter(r)
	start := time.Now()
	tr.Send([]multiraft.Message{{Group: 1, ToNode: 2, FromNode: 1, Msg: &raftpb.Message{Type: raftpb.MsgHeartbeat.Enum(), To: proto.Uint64(2)}}})
	var c net.Conn
	select {
	case c = <-accepted:
		defer c.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("the transport never connected")
	}
	select {
	case n := <-r.down:
		if n != 2 {
			t.Fatalf("NodeDown(%d), want 2", n)
		}
		if d := time.Since(start); d < connSilenceTimeout {
			t.Fatalf("peer dropped after %v, before its silence lasted %v", d, connSilenceTimeout)
		}
	case <-time.After(4 * connSilenceTimeout):
		t.Fatalf("a silent peer was not taken for down within %v", 4*connSilenceTimeout)
	}
}
