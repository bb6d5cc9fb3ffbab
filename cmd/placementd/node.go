package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
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
	"github.com/flotilla-kv/flotilla/placement"
	"github.com/flotilla-kv/flotilla/rpc"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// run is placementd's life: open the catalogue, join the placement Raft
// group, serve the Placement API, schedule while leading, stop on ctx.
func run(ctx context.Context, cfg Config) error {
	logger, _ := cli.NewLogger(os.Stderr, cfg.LogFormat, cfg.LogLevel)
	self := multiraft.NodeID(cfg.ID)
	logger = logger.With("placement", self)
	peers, _ := cli.ParsePeers(cfg.Peers)
	if len(peers) == 0 {
		peers[self] = cfg.Advertise
	}
	// With TLS, the Placement API, the catalogue's Raft traffic between
	// replicas and the Admin calls to nodes are all mutual TLS.
	tlsCfg, err := tlsconfig.Load(cfg.TLS)
	if err != nil {
		return err
	}
	conns := &serve.ConnPool{Creds: tlsCfg.ClientCredentials()}
	defer conns.Close()
	pcfg := placement.Config{
		ReplicaID: self, Peers: peers, ReplicationFactor: cfg.ReplicationFactor, InitialShards: cfg.InitialShards,
		DownAfter: cfg.DownAfter, SplitSizeBytes: uint64(cfg.SplitSize), SplitLoad: cfg.SplitLoad,
		HeartbeatInterval: cfg.HeartbeatInterval, ScheduleInterval: cfg.ScheduleInterval,
		Dial: conns.Dial, Logger: logger,
	}
	if err := pcfg.Validate(); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return err
	}
	db, err := pebble.Open(cfg.DataDir, pebbleopts.Options(serve.PebbleLogger{L: logger}, 0))
	if err != nil {
		return fmt.Errorf("opening pebble in %s: %w", cfg.DataDir, err)
	}
	defer db.Close()

	tcfg := rpc.TransportConfig{NodeID: self, Resolver: rpc.StaticResolver(peers), Dial: conns.Dial, Logger: logger}
	if err := tcfg.Validate(); err != nil {
		return err
	}
	transport := rpc.NewTransport(tcfg)
	// The engine builds the catalogue's state machine through cat; the
	// service reads the catalogue from cat and proposes through the engine.
	var cat placement.Catalogue
	engine, err := multiraft.Open(multiraft.Config{
		NodeID: self, DB: db, Transport: transport, NewStateMachine: cat.StateMachineFunc(), Logger: logger, Workers: 2,
	})
	if err != nil {
		return fmt.Errorf("recovering the catalogue: %w", err)
	}
	transport.SetReporter(engine)
	svc, err := placement.New(pcfg, &cat, engine)
	if err != nil {
		return err
	}
	if err := svc.Bootstrap(); err != nil {
		return fmt.Errorf("creating the catalogue group: %w", err)
	}

	tel, err := telemetry.New("placementd")
	if err != nil {
		return err
	}
	defer tel.Shutdown(context.Background())
	if err := tel.ObservePlacement(svc); err != nil {
		return err
	}
	// Traces: off unless OTEL_EXPORTER_OTLP_ENDPOINT is set (see internal/telemetry).
	tracing, err := telemetry.StartTracing(ctx, "placementd", fmt.Sprint(cfg.ID))
	if err != nil {
		return err
	}
	defer func() {
		fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tracing.Shutdown(fctx)
	}()
	if err := tel.ObserveEngine(engine); err != nil {
		return err
	}
	interceptor, err := tel.UnaryServerInterceptor()
	if err != nil {
		return err
	}

	var ready atomic.Bool
	healthSrv := health.NewServer()
	healthSrv.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	srv := grpc.NewServer(append(append(serve.ServerOptions(tlsCfg.ServerOption()), grpc.ChainUnaryInterceptor(interceptor)), tracing.ServerOptions()...)...)
	raftSrv := rpc.NewRaftServer(self, engine, transport)
	pb.RegisterRaftServer(srv, raftSrv)
	pb.RegisterPlacementServer(srv, svc)
	healthpb.RegisterHealthServer(srv, healthSrv)
	reflection.Register(srv)
	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	serveErr := make(chan error, 2)
	tsSrv := rpc.NewTimestampServer(svc.FramedTimestamps)
	defer tsSrv.Close()
	var serverTLS *tls.Config
	if tlsCfg.Enabled() {
		serverTLS = tlsCfg.ServerTLS()
	}
	wg.Go(func() { serveErr <- srv.Serve(tsSrv.Demux(lis, serverTLS)) })
	var httpSrv *http.Server
	if cfg.HTTP != "" {
		mux := serve.HealthMux(&ready)
		mux.Handle("GET /metrics", tel.Handler)
		placement.RegisterHTTP(mux, svc)
		if cfg.Pprof {
			serve.RegisterPprof(mux)
		}
		httpSrv = &http.Server{Addr: cfg.HTTP, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		hl, err := net.Listen("tcp", cfg.HTTP)
		if err != nil {
			srv.Stop()
			return err
		}
		wg.Go(func() {
			if err := httpSrv.Serve(hl); !errors.Is(err, http.ErrServerClosed) {
				serveErr <- err
			}
		})
	}
	bg, stopBG := context.WithCancel(context.Background())
	wg.Go(func() { engine.RunTicker(bg, cfg.Tick) })
	wg.Go(func() { svc.Run(bg) })
	ready.Store(true)
	healthSrv.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	logger.Info("ready", "listen", lis.Addr().String(), "peers", len(peers), "http", cfg.HTTP, "tls", tlsCfg.Enabled())

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		logger.Error("server failed", "err", err)
	}
	ready.Store(false)
	healthSrv.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Hand the catalogue's leadership to another replica first.
	rpc.Drain(stopCtx, engine, 20*time.Millisecond)
	// The peers' streams would hold the graceful stop until the timeout.
	raftSrv.Close()
	serve.StopGRPC(stopCtx, srv)
	if httpSrv != nil {
		_ = httpSrv.Shutdown(stopCtx)
	}
	stopBG()
	transport.Close()
	_ = engine.Close()
	wg.Wait()
	if err := db.LogData(nil, pebble.Sync); err != nil {
		return err
	}
	logger.Info("stopped")
	return nil
}
