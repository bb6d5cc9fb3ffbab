package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/flotilla-kv/flotilla/internal/cli"
	"github.com/flotilla-kv/flotilla/internal/pebbleopts"
	"github.com/flotilla-kv/flotilla/internal/serve"
	"github.com/flotilla-kv/flotilla/internal/telemetry"
	"github.com/flotilla-kv/flotilla/internal/tlsconfig"
	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/placement/tso"
	"github.com/flotilla-kv/flotilla/rpc"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
	"github.com/flotilla-kv/flotilla/shard"
)

// run is the node's life, in the order of a Raft node's run loop: open
// Pebble and recover every group, start gRPC, mark ready, serve until ctx
// ends, then shut down gracefully.
func run(ctx context.Context, cfg Config) error {
	logger, _ := cli.NewLogger(os.Stderr, cfg.LogFormat, cfg.LogLevel)
	logger = logger.With("node", cfg.NodeID)
	peers, _ := cli.ParsePeers(cfg.Peers)
	self := multiraft.NodeID(cfg.NodeID)
	peers[self] = cfg.Advertise
	resolver := newResolver(peers)
	// With TLS, every connection in (KV, Admin, Raft) and out (peers'
	// transport, forwarding, placement) is mutual TLS; nil is plaintext.
	tlsCfg, err := tlsconfig.Load(cfg.TLS)
	if err != nil {
		return err
	}

	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return err
	}
	db, err := pebble.Open(cfg.DataDir, pebbleopts.Options(serve.PebbleLogger{L: logger}, int64(cfg.BlockCache)))
	if err != nil {
		return fmt.Errorf("opening pebble in %s: %w", cfg.DataDir, err)
	}
	defer db.Close()

	conns := &serve.ConnPool{Creds: tlsCfg.ClientCredentials()}
	defer conns.Close()
	// Writes are stamped with revisions from placement's timestamp oracle,
	// or, on a node run without placement, from the node's own.
	var oracle shard.Oracle
	if cfg.Placement != "" {
		po := &placementOracle{addrs: strings.Split(cfg.Placement, ","), dial: conns.Dial, framed: true}
		if tlsCfg.Enabled() {
			po.framedTLS = tlsCfg.ClientTLS()
		}
		defer po.close()
		oracle = po
	} else {
		own, err := tso.Open(ctx, nodeOracleStore{db}, tso.Config{})
		if err != nil {
			return fmt.Errorf("opening the node's timestamp oracle: %w", err)
		}
		defer own.Close()
		oracle = own
	}
	store, err := shard.NewStore(cfg.shardConfig(), oracle)
	if err != nil {
		return err
	}
	tcfg := rpc.TransportConfig{
		NodeID: self, Resolver: resolver, Dial: conns.Dial, Logger: logger,
		SnapshotRateBytes: int64(cfg.SnapshotRate), MaxConcurrentSnapshots: cfg.MaxSnapshots,
		Framed: true,
	}
	var serverTLS *tls.Config
	if tlsCfg.Enabled() {
		tcfg.FramedTLS, serverTLS = tlsCfg.ClientTLS(), tlsCfg.ServerTLS()
	}
	if err := tcfg.Validate(); err != nil {
		return err
	}
	transport := rpc.NewTransport(tcfg)
	start := time.Now()
	engine, err := multiraft.Open(multiraft.Config{
		NodeID: self, DB: db, Transport: transport, NewStateMachine: store.StateMachineFunc(),
		Logger: logger, Workers: cfg.Workers, ElectionTicks: cfg.ElectionTicks, HeartbeatTicks: cfg.HeartbeatTick,
	})
	if err != nil {
		return fmt.Errorf("recovering the engine: %w", err)
	}
	store.SetEngine(engine)
	transport.SetReporter(engine)
	logger.Info("recovered", "groups", len(engine.Groups()), "took", time.Since(start).Round(time.Millisecond))

	tel, err := telemetry.New("shardnode")
	if err != nil {
		return err
	}
	defer tel.Shutdown(context.Background())
	if err := tel.ObserveEngine(engine); err != nil {
		return err
	}
	if err := tel.ObserveTransport(transport); err != nil {
		return err
	}
	if err := tel.ObserveDisk(cfg.DataDir); err != nil {
		return err
	}
	interceptor, err := tel.UnaryServerInterceptor()
	if err != nil {
		return err
	}
	// Traces: off unless OTEL_EXPORTER_OTLP_ENDPOINT is set (see internal/telemetry).
	tracing, err := telemetry.StartTracing(ctx, "shardnode", fmt.Sprint(cfg.NodeID))
	if err != nil {
		return err
	}
	defer func() {
		fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tracing.Shutdown(fctx)
	}()

	var ready atomic.Bool
	healthSrv := health.NewServer()
	healthSrv.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	srv := grpc.NewServer(append(append(serve.ServerOptions(tlsCfg.ServerOption()), grpc.ChainUnaryInterceptor(interceptor)), tracing.ServerOptions()...)...)
	dialNode := func(n multiraft.NodeID) (*grpc.ClientConn, error) {
		addr, err := resolver.Resolve(n)
		if err != nil {
			return nil, err
		}
		return conns.Dial(addr)
	}
	var forward func(multiraft.NodeID) (*grpc.ClientConn, error)
	if cfg.Forward {
		forward = dialNode
	}
	raftSrv := rpc.NewRaftServer(self, engine, transport)
	pb.RegisterRaftServer(srv, raftSrv)
	kvSrv := rpc.NewKVServer(store, resolver, forward)
	leases, err := startLeases(cfg, peers, tlsCfg, store, engine, oracle, kvSrv, logger)
	if err != nil {
		return err
	}
	defer leases.close()
	if err := tel.ObserveLeases(leases.Lessor); err != nil {
		return err
	}
	if err := tel.ObserveStamper(store); err != nil {
		return err
	}
	// The lock sweeper (locksweep.go), through the node's router.
	sweeper, err := newLockSweeper(cfg.LockSweep, engine, store, leases.router, tel, logger)
	if err != nil {
		return err
	}
	pb.RegisterKVServer(srv, kvSrv)
	adminSrv := rpc.NewAdminServer(rpc.AdminOptions{
		NodeID: self, Addr: cfg.Advertise, Engine: engine, Store: store, Resolver: resolver,
		Ready: ready.Load, Dial: dialNode, Transport: transport, Nodes: resolver.nodes,
	})
	pb.RegisterAdminServer(srv, adminSrv)
	healthpb.RegisterHealthServer(srv, healthSrv)
	reflection.Register(srv)

	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	serveErr := make(chan error, 3)
	// Framed KV connections (rpc/kvconn.go) carry the routers' Multi
	// calls past gRPC, through the same interceptor, so the request
	// metrics count them as gRPC's.
	multiInfo := &grpc.UnaryServerInfo{Server: kvSrv, FullMethod: pb.KV_Multi_FullMethodName}
	multi := func(ctx context.Context, req any) (any, error) { return kvSrv.Multi(ctx, req.(*pb.MultiRequest)) }
	kvFrames := rpc.NewKVFrameServer(func(ctx context.Context, req *pb.MultiRequest) (*pb.MultiResponse, error) {
		resp, err := interceptor(ctx, req, multiInfo, multi)
		if err != nil {
			return nil, err
		}
		return resp.(*pb.MultiResponse), nil
	})
	defer kvFrames.Close()
	wg.Go(func() { serveErr <- srv.Serve(kvFrames.Demux(raftSrv.Demux(lis, serverTLS), serverTLS)) })
	// The etcd v3 API, on its own port, through the node's router.
	var etcdSrv *grpc.Server
	labels := &pb.NodeLabels{Zone: cfg.Zone, Rack: cfg.Rack}
	if cfg.EtcdListen != "" {
		en := etcdNode{cfg: cfg, store: store, tls: tlsCfg, leases: leases, engine: engine, db: db, dial: conns.Dial, logger: logger,
			selfURL: etcdClientURL(cfg.EtcdAdvertise, tlsCfg.Enabled())}
		esrv, elis, err := startEtcd(en)
		if err != nil {
			srv.Stop()
			return err
		}
		etcdSrv = esrv
		labels.Extra = map[string]string{etcdURLsLabel: en.selfURL}
		wg.Go(func() { serveErr <- esrv.Serve(elis) })
		logger.Info("serving the etcd API", "listen", elis.Addr().String(), "advertise", en.selfURL)
	}
	var httpSrv *http.Server
	if cfg.HTTP != "" {
		mux := serve.HealthMux(&ready)
		mux.Handle("GET /metrics", tel.Handler)
		if cfg.Pprof {
			serve.RegisterPprof(mux)
		}
		httpSrv = &http.Server{Addr: cfg.HTTP, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		hl, err := net.Listen("tcp", cfg.HTTP)
		if err != nil {
			srv.Stop()
			stopEtcd(context.Background(), etcdSrv)
			return err
		}
		wg.Go(func() {
			if err := httpSrv.Serve(hl); !errors.Is(err, http.ErrServerClosed) {
				serveErr <- err
			}
		})
	}
	tickCtx, stopTicks := context.WithCancel(context.Background())
	wg.Go(func() { engine.RunTicker(tickCtx, cfg.Tick) })
	if cfg.GCInterval > 0 {
		gc := rpc.NewReplicaGC(adminSrv, rpc.ReplicaGCConfig{
			Interval: cfg.GCInterval, LeaderlessAfter: cfg.GCLeaderlessAfter, EmptyAfter: cfg.GCEmptyAfter, Logger: logger,
		})
		wg.Go(func() { gc.Run(tickCtx) })
	}
	// The history collector (gc.go).
	if cfg.HistoryGC.Interval > 0 {
		hc := &historyCollector{cfg: cfg.HistoryGC, engine: engine, store: store, logger: logger}
		wg.Go(func() { hc.run(tickCtx) })
	}
	if cfg.LockSweep.Interval > 0 {
		wg.Go(func() { sweeper.run(tickCtx) })
	}

	ready.Store(true)
	healthSrv.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	if cfg.Placement != "" {
		rep := &reporter{
			self: self, addr: cfg.Advertise, labels: labels,
			addrs: strings.Split(cfg.Placement, ","), interval: cfg.Heartbeat, engine: engine, store: store,
			resolver: resolver, dial: conns.Dial, logger: logger, leases: leases.Lessor.Count,
			capacity: capacityBytes(cfg, logger), requests: &tel.Requests,
		}
		wg.Go(func() { rep.run(tickCtx) })
	}
	logger.Info("ready", "listen", lis.Addr().String(), "advertise", cfg.Advertise, "http", cfg.HTTP, "tls", tlsCfg.Enabled())

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		logger.Error("server failed", "err", err)
	case <-engine.Failed():
		// Fail-stop: a write or sync of the store failed, and the engine
		// stopped itself without acknowledging anything that was not
		// durable. Serve nothing more and exit non-zero without writing to
		// the store again; a restart recovers from what was synced.
		logger.Error("the engine stopped on a disk failure; exiting", "err", engine.Err())
		ready.Store(false)
		srv.Stop()
		kvFrames.Close()
		stopEtcd(context.Background(), etcdSrv)
		stopTicks()
		return fmt.Errorf("shardnode: %w", engine.Err())
	}
	shutdown(logger, cfg, engine, raftSrv, kvFrames, srv, etcdSrv, httpSrv, healthSrv, &ready)
	stopTicks()
	transport.Close()
	_ = engine.Close()
	wg.Wait()
	// Make everything applied durable before the DB closes.
	if err := db.LogData(nil, pebble.Sync); err != nil {
		return err
	}
	logger.Info("stopped")
	return nil
}

// shutdown stops serving gracefully: not ready, leaderships handed to
// other replicas while requests still flow, then in-flight requests
// finish.
func shutdown(logger *slog.Logger, cfg Config, e *multiraft.Engine, raftSrv *rpc.RaftServer, kvFrames *rpc.KVFrameServer, srv, etcdSrv *grpc.Server, httpSrv *http.Server, h *health.Server, ready *atomic.Bool) {
	logger.Info("shutting down: handing off leaderships", "leaders", e.Leaders())
	ready.Store(false)
	h.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownAfter)
	defer cancel()
	if left := rpc.Drain(ctx, e, 20*time.Millisecond); left > 0 {
		logger.Warn("shutting down with leaderships not handed off", "leaders", left)
	}
	// The peers' streams would hold the graceful stop until the timeout.
	raftSrv.Close()
	stopEtcd(ctx, etcdSrv)
	var wg sync.WaitGroup
	wg.Go(func() { kvFrames.Shutdown(ctx) })
	serve.StopGRPC(ctx, srv)
	wg.Wait()
	if httpSrv != nil {
		_ = httpSrv.Shutdown(ctx)
	}
}

// etcdStopWait bounds the graceful part of stopping the etcd API: its
// watch and keepalive streams never end by themselves, and etcd clients
// reconnect to another endpoint when cut off.
const etcdStopWait = time.Second

// stopEtcd stops the etcd API server (nil: none): in-flight calls get up
// to etcdStopWait (within ctx) to finish, then every stream is cut.
func stopEtcd(ctx context.Context, srv *grpc.Server) {
	if srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, etcdStopWait)
	defer cancel()
	serve.StopGRPC(ctx, srv)
}
