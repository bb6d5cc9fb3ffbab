package rpc

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/internal/tlsconfig"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// counterHandler hands out timestamps from a counter, refusing a count
// above 100 as the oracle refuses one out of range.
type counterHandler struct {
	next  atomic.Uint64
	calls atomic.Int64
}

func (h *counterHandler) handle(_ context.Context, req *pb.GetTimestampsRequest) (*pb.GetTimestampsResponse, error) {
	h.calls.Add(1)
	n := uint64(req.GetCount())
	if n > 100 {
		return nil, status.Errorf(codes.InvalidArgument, "count: %d is too many", n)
	}
	first := h.next.Add(n) - n + 1
	return &pb.GetTimestampsResponse{First: first, LastWrite: first + uint64(req.GetWriteSpan())}, nil
}

// serveTimestamps serves h's framed connections and a gRPC health service
// on one demultiplexed listener, with TLS if tlsCfg is set; it returns the
// address.
func serveTimestamps(t *testing.T, h TimestampHandler, tlsCfg *tlsconfig.Config) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var opts []grpc.ServerOption
	if tlsCfg != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsCfg.ServerTLS())))
	}
	srv := grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	ts := NewTimestampServer(h)
	var serverTLS *tls.Config
	if tlsCfg != nil {
		serverTLS = tlsCfg.ServerTLS()
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(ts.Demux(lis, serverTLS)) })
	t.Cleanup(func() { ts.Close(); srv.Stop(); wg.Wait() })
	return lis.Addr().String()
}

func dialTimestamps(t *testing.T, addr string, tlsCfg *tlsconfig.Config) *TimestampConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var c *TimestampConn
	var err error
	if tlsCfg != nil {
		c, err = DialTimestamps(ctx, addr, tlsCfg.ClientTLS())
	} else {
		c, err = DialTimestamps(ctx, addr, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func devTLS(t *testing.T) *tlsconfig.Config {
	t.Helper()
	ca, err := tlsconfig.NewDevCA(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	files, err := tlsconfig.WriteDevFiles(ca, t.TempDir(), "placement-1", tlsconfig.DefaultHosts, false)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := tlsconfig.Load(files)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestTimestampConnAnswers: requests on one framed connection get the
// handler's answers in order, in plaintext and over TLS, while the same
// listener still serves gRPC; an error answer comes back with its code
// and message and ends the connection.
func TestTimestampConnAnswers(t *testing.T) {
	for _, name := range []string{"plaintext", "tls"} {
		t.Run(name, func(t *testing.T) {
			var tlsCfg *tlsconfig.Config
			if name == "tls" {
				tlsCfg = devTLS(t)
			}
			h := &counterHandler{}
			addr := serveTimestamps(t, h.handle, tlsCfg)
			c := dialTimestamps(t, addr, tlsCfg)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var want uint64 = 1
			for n := uint32(1); n <= 20; n++ {
				resp, err := c.Ask(ctx, &pb.GetTimestampsRequest{Count: n, WriteSpan: n / 2})
				if err != nil {
					t.Fatal(err)
				}
				if resp.GetFirst() != want || resp.GetLastWrite() != want+uint64(n/2) {
					t.Fatalf("count %d: first %d last write %d, want %d and %d", n, resp.GetFirst(), resp.GetLastWrite(), want, want+uint64(n/2))
				}
				want += uint64(n)
			}

			// gRPC on the same port.
			creds := insecure.NewCredentials()
			if tlsCfg != nil {
				creds = credentials.NewTLS(tlsCfg.ClientTLS())
			}
			gc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
			if err != nil {
				t.Fatal(err)
			}
			defer gc.Close()
			if _, err := healthpb.NewHealthClient(gc).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
				t.Fatalf("gRPC beside framed timestamp connections: %v", err)
			}

			_, err = c.Ask(ctx, &pb.GetTimestampsRequest{Count: 101})
			if status.Code(err) != codes.InvalidArgument || status.Convert(err).Message() != "count: 101 is too many" {
				t.Fatalf("a refused request: %v", err)
			}
			if _, err := c.Ask(ctx, &pb.GetTimestampsRequest{Count: 1}); err == nil {
				t.Fatal("the connection answered after an error")
			}
			if got := h.calls.Load(); got != 21 {
				t.Fatalf("handler called %d times, want 21", got)
			}
		})
	}
}

// TestTimestampConnUnsupported: a placementd whose listener does not
// demultiplex (plain gRPC) fails the dial with ErrTimestampsUnsupported,
// in plaintext and over TLS.
func TestTimestampConnUnsupported(t *testing.T) {
	for _, name := range []string{"plaintext", "tls"} {
		t.Run(name, func(t *testing.T) {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			var opts []grpc.ServerOption
			var tlsCfg *tlsconfig.Config
			if name == "tls" {
				tlsCfg = devTLS(t)
				opts = append(opts, grpc.Creds(credentials.NewTLS(tlsCfg.ServerTLS())))
			}
			srv := grpc.NewServer(opts...)
			var wg sync.WaitGroup
			wg.Go(func() { _ = srv.Serve(lis) })
			defer func() { srv.Stop(); wg.Wait() }()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var c *TimestampConn
			if tlsCfg != nil {
				c, err = DialTimestamps(ctx, lis.Addr().String(), tlsCfg.ClientTLS())
			} else {
				c, err = DialTimestamps(ctx, lis.Addr().String(), nil)
			}
			if !errors.Is(err, ErrTimestampsUnsupported) {
				if c != nil {
					_ = c.Close()
				}
				t.Fatalf("dial to a plain gRPC server: %v, want ErrTimestampsUnsupported", err)
			}
		})
	}
}

// TestTimestampConnChecksum: the server ends a connection whose request
// fails its checksum, without calling the handler.
func TestTimestampConnChecksum(t *testing.T) {
	h := &counterHandler{}
	addr := serveTimestamps(t, h.handle, nil)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, tsConnMagic); err != nil {
		t.Fatal(err)
	}
	var ok [len(tsConnAccepted)]byte
	if _, err := io.ReadFull(conn, ok[:]); err != nil || string(ok[:]) != tsConnAccepted {
		t.Fatalf("handshake: %q, %v", ok, err)
	}
	var req [tsRequestBytes]byte
	binary.BigEndian.PutUint32(req[0:], 3)
	binary.BigEndian.PutUint32(req[8:], crc32.Checksum(req[:8], castagnoli)^1)
	if _, err := conn.Write(req[:]); err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if n, err := conn.Read(b[:]); err == nil {
		t.Fatalf("the server answered a corrupt request with %d bytes", n)
	}
	if h.calls.Load() != 0 {
		t.Fatal("the handler was called for a corrupt request")
	}
}

// TestTimestampConnContext: a request whose context ends while the
// server has not answered fails with the context's error.
func TestTimestampConnContext(t *testing.T) {
	release, asked := make(chan struct{}), make(chan struct{})
	addr := serveTimestamps(t, func(ctx context.Context, _ *pb.GetTimestampsRequest) (*pb.GetTimestampsResponse, error) {
		close(asked)
		select {
		case <-release:
		case <-ctx.Done():
		}
		return &pb.GetTimestampsResponse{First: 1}, nil
	}, nil)
	defer close(release)
	c := dialTimestamps(t, addr, nil)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-asked; cancel() }()
	if _, err := c.Ask(ctx, &pb.GetTimestampsRequest{Count: 1}); !errors.Is(err, context.Canceled) {
		t.Fatalf("a request whose context was cancelled: %v", err)
	}
}
