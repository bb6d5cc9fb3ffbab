package rpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/flotilla-kv/flotilla/internal/pebbleopts"
	"github.com/flotilla-kv/flotilla/internal/serve"
	"github.com/flotilla-kv/flotilla/internal/testutil"
	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/placement/tso"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
	"github.com/flotilla-kv/flotilla/shard"
)

// stack is one in-process node: Pebble in memory, the engine with its
// workers, a store, and the KV, Admin and Raft services, both callable
// directly and served by gRPC on loopback with the servers' real options.
type stack struct {
	tb        testing.TB
	db        *pebble.DB
	engine    *multiraft.Engine
	store     *shard.Store
	transport *Transport
	kvSrv     *KVServer
	adminSrv  *AdminServer
	raftSrv   *RaftServer
	srv       *grpc.Server
	conn      *grpc.ClientConn
	addr      string
}

type stackConfig struct {
	transport TransportConfig
	// serverOptions replace serve.ServerOptions() when set.
	serverOptions []grpc.ServerOption
	// storeEngine, when set, wraps the engine the store serves through.
	storeEngine func(shard.Engine) shard.Engine
}

// quietPebble keeps Pebble's logs out of test output; a fatal error
// panics (the engine turns a panicking commit into fail-stop).
type quietPebble struct{}

func (quietPebble) Infof(string, ...any)  {}
func (quietPebble) Errorf(string, ...any) {}
func (quietPebble) Fatalf(format string, args ...any) {
	panic(errors.New("pebble fatal: " + format))
}

// newStack starts node 1 with shard 1 over the whole key space (a single
// voter, so it leads at once) and waits until it serves writes.
func newStack(tb testing.TB, sc stackConfig) *stack {
	tb.Helper()
	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem(), Logger: quietPebble{}, Comparer: pebbleopts.Comparer})
	if err != nil {
		tb.Fatal(err)
	}
	oracle := tso.Local()
	tb.Cleanup(func() { _ = oracle.Close() })
	store, err := shard.NewStore(shard.Config{}, oracle)
	if err != nil {
		tb.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	sc.transport.NodeID = 1
	if sc.transport.Resolver == nil {
		sc.transport.Resolver = StaticResolver{}
	}
	conns := &serve.ConnPool{}
	if sc.transport.Dial == nil {
		sc.transport.Dial = conns.Dial
	}
	sc.transport.Logger = logger
	transport := NewTransport(sc.transport)
	engine, err := multiraft.Open(multiraft.Config{
		NodeID: 1, DB: db, Transport: transport, NewStateMachine: store.StateMachineFunc(), Logger: logger, Workers: 2,
	})
	if err != nil {
		tb.Fatal(err)
	}
	if sc.storeEngine != nil {
		store.SetEngine(sc.storeEngine(engine))
	} else {
		store.SetEngine(engine)
	}
	transport.SetReporter(engine)
	s := &stack{tb: tb, db: db, engine: engine, store: store, transport: transport}
	resolver := StaticResolver{}
	s.kvSrv = NewKVServer(store, resolver, nil)
	s.adminSrv = NewAdminServer(AdminOptions{
		NodeID: 1, Engine: engine, Store: store, Resolver: resolver, Ready: func() bool { return true },
		Dial: func(multiraft.NodeID) (*grpc.ClientConn, error) { return nil, errors.New("single node") },
	})
	s.raftSrv = NewRaftServer(1, engine, transport)
	opts := sc.serverOptions
	if opts == nil {
		opts = serve.ServerOptions()
	}
	s.srv = grpc.NewServer(opts...)
	pb.RegisterKVServer(s.srv, s.kvSrv)
	pb.RegisterAdminServer(s.srv, s.adminSrv)
	pb.RegisterRaftServer(s.srv, s.raftSrv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s.addr = lis.Addr().String()
	go func() { _ = s.srv.Serve(lis) }()
	s.conn, err = grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = s.conn.Close()
		s.srv.Stop()
		transport.Close()
		_ = engine.Close()
		conns.Close()
		_ = db.Close()
	})

	desc := shard.Descriptor{ShardID: 1, Epoch: shard.Epoch{ConfVer: 1, Version: 1},
		Replicas: []multiraft.Replica{{ReplicaID: 101, NodeID: 1}}}
	if err := store.CreateShard(desc, 101); err != nil {
		tb.Fatal(err)
	}
	// The single voter campaigns in its first round; until it leads, a
	// write is refused.
	ctx := testutil.Context(tb, 20*time.Second)
	testutil.Eventually(tb, 20*time.Second, func() error {
		if _, err := s.kvSrv.Put(ctx, &pb.PutRequest{Header: &pb.RequestHeader{ShardId: 1}, Key: []byte("seed"), Value: []byte("1")}); err != nil {
			return fmt.Errorf("shard 1 never served a write: %w", err)
		}
		return nil
	})
	return s
}

func (s *stack) kv() pb.KVClient       { return pb.NewKVClient(s.conn) }
func (s *stack) admin() pb.AdminClient { return pb.NewAdminClient(s.conn) }

// data returns every key and value of shard 1, read linearizably.
func (s *stack) data() map[string]string {
	s.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m := map[string]string{}
	var start []byte
	for {
		resp, err := s.kvSrv.Scan(ctx, &pb.ScanRequest{Header: &pb.RequestHeader{ShardId: 1}, Start: start})
		if err != nil {
			s.tb.Fatalf("scan: %v", err)
		}
		for _, kv := range resp.GetKvs() {
			m[string(kv.GetKey())] = string(kv.GetValue())
		}
		if !resp.GetMore() {
			return m
		}
		start = resp.GetResumeKey()
	}
}
