package serve

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
)

// ConnPool shares one client connection per address. Safe for concurrent
// use; the zero value is ready and dials in plaintext.
type ConnPool struct {
	// Creds are the transport credentials of every connection: the
	// process's mutual TLS (tlsconfig.Config.ClientCredentials), or nil for
	// plaintext. Set before the first Dial; not changed afterwards.
	Creds credentials.TransportCredentials

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

// Dial returns the pool's connection to addr, creating it on first use.
// Connections send keepalive pings so a dead peer is noticed within
// seconds even when idle.
func (p *ConnPool) Dial(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[addr]; ok {
		return c, nil
	}
	creds := p.Creds
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	c, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(creds),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: time.Second, Timeout: 2 * time.Second, PermitWithoutStream: true}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageBytes)),
	)
	if err != nil {
		return nil, err
	}
	if p.conns == nil {
		p.conns = map[string]*grpc.ClientConn{}
	}
	p.conns[addr] = c
	return c, nil
}

// Close closes every connection.
func (p *ConnPool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

// MaxMessageBytes bounds one gRPC message, in both directions.
const MaxMessageBytes = 16 << 20

// ServerOptions are the gRPC server options every Flotilla server uses,
// followed by extra (such as the server's transport credentials,
// tlsconfig.Config.ServerOption). The caller owns the returned slice.
// They include the resource limits described in limits.go.
func ServerOptions(extra ...grpc.ServerOption) []grpc.ServerOption {
	opts := []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 500 * time.Millisecond, PermitWithoutStream: true}),
		grpc.MaxRecvMsgSize(MaxMessageBytes),
		grpc.MaxConcurrentStreams(MaxStreamsPerConn),
	}
	opts = append(opts, RequestLimitOptions(MaxRequestsPerConn)...)
	return append(opts, extra...)
}

// HealthMux returns a mux serving /healthz (the process is alive) and
// /readyz (200 once ready reports true, 503 before and while stopping).
func HealthMux(ready *atomic.Bool) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

// RegisterPprof adds the runtime profiles under /debug/pprof/ to mux.
func RegisterPprof(mux *http.ServeMux) {
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}

// StopGRPC stops srv gracefully, forcing it once ctx ends.
func StopGRPC(ctx context.Context, srv *grpc.Server) {
	done := make(chan struct{})
	go func() { srv.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		srv.Stop()
	}
}

// PebbleLogger routes Pebble's logs to slog (its info at debug level).
type PebbleLogger struct{ L *slog.Logger }

// Infof implements pebble's Logger.
func (p PebbleLogger) Infof(format string, args ...any) {
	p.L.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}

// Errorf implements pebble's Logger.
func (p PebbleLogger) Errorf(format string, args ...any) {
	p.L.Error(fmt.Sprintf(format, args...), "component", "pebble")
}

// Fatalf implements pebble's Logger.
func (p PebbleLogger) Fatalf(format string, args ...any) {
	p.L.Error(fmt.Sprintf(format, args...), "component", "pebble")
	os.Exit(1)
}
