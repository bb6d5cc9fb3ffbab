package tlsconfig

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
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

	"github.com/flotilla-kv/flotilla/internal/testutil"
)

// pki is two unrelated CAs and certificates from each, on disk.
type pki struct {
	dir                     string
	server, client, foreign Files // foreign: signed by the other CA
	foreignServer           Files
}

func newPKI(t *testing.T) pki {
	t.Helper()
	dir := t.TempDir()
	ca, err := NewDevCA(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewDevCA(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var p pki
	p.dir = dir
	mustWrite := func(ca *DevCA, sub, name string) Files {
		f, err := WriteDevFiles(ca, filepath.Join(dir, sub), name, DefaultHosts, false)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	p.server = mustWrite(ca, "a", "server")
	p.client = mustWrite(ca, "a", "client")
	p.foreign = mustWrite(other, "b", "client")
	p.foreignServer = mustWrite(other, "b", "server")
	return p
}

func mustLoad(t *testing.T, f Files) *Config {
	t.Helper()
	c, err := Load(f)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestFilesAllOrNone(t *testing.T) {
	if (Files{}).Problems() != nil {
		t.Error("no TLS flag must be fine")
	}
	if c, err := Load(Files{}); c != nil || err != nil {
		t.Errorf("Load(zero) = %v, %v; want plaintext (nil, nil)", c, err)
	}
	p := Files{Cert: "x.crt"}.Problems()
	if len(p) != 1 || !strings.Contains(p[0], "--tls-key and --tls-ca missing") {
		t.Errorf("problems = %q, want --tls-key and --tls-ca named as missing", p)
	}
	p = Files{Cert: "x.crt", Key: "x.key"}.Problems()
	if len(p) != 1 || !strings.Contains(p[0], "--tls-ca missing") || strings.Contains(p[0], "--tls-key missing") {
		t.Errorf("problems = %q, want only --tls-ca named as missing", p)
	}
	if _, err := Load(Files{CA: "ca.crt"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Load(partial) = %v, want ErrInvalid", err)
	}
	if (Files{Cert: "a", Key: "b", CA: "c"}).Problems() != nil {
		t.Error("a complete set must have no problem")
	}
	args := strings.Join(Files{Cert: "a", Key: "b", CA: "c"}.Args(), " ")
	if args != "--tls-cert a --tls-key b --tls-ca c" {
		t.Errorf("Args = %q", args)
	}
}

func TestLoadRefusesBadFiles(t *testing.T) {
	p := newPKI(t)
	garbage := filepath.Join(p.dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		files Files
		want  []string // substrings of the error
		is    error
	}{
		{"missing cert", Files{Cert: filepath.Join(p.dir, "nope.crt"), Key: p.server.Key, CA: p.server.CA}, []string{"--tls-cert", "nope.crt"}, os.ErrNotExist},
		{"missing key and CA", Files{Cert: p.server.Cert, Key: "/nonexistent/k", CA: "/nonexistent/ca"}, []string{"--tls-key", "--tls-ca"}, os.ErrNotExist},
		{"CA not PEM", Files{Cert: p.server.Cert, Key: p.server.Key, CA: garbage}, []string{"--tls-ca", "no PEM certificate"}, nil},
		{"cert not PEM", Files{Cert: garbage, Key: p.server.Key, CA: p.server.CA}, []string{"--tls-cert", "garbage.pem"}, nil},
		{"key of another cert", Files{Cert: p.server.Cert, Key: p.client.Key, CA: p.server.CA}, []string{"--tls-key", "does not match"}, nil},
		{"cert of another CA", Files{Cert: p.foreign.Cert, Key: p.foreign.Key, CA: p.server.CA}, []string{"not signed by the CA", "unknown authority"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(tc.files)
			if c != nil || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Load = %v, %v; want ErrInvalid", c, err)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("err = %v, want it to wrap %v", err, tc.is)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v, want it to name %q", err, w)
				}
			}
		})
	}
}

func TestServerAndClientConfigs(t *testing.T) {
	p := newPKI(t)
	c := mustLoad(t, p.server)
	s := c.ServerTLS()
	if s.MinVersion != tls.VersionTLS13 || s.ClientAuth != tls.RequireAndVerifyClientCert || s.ClientCAs == nil || len(s.Certificates) != 1 {
		t.Errorf("server config: min %x auth %v cas %v certs %d", s.MinVersion, s.ClientAuth, s.ClientCAs != nil, len(s.Certificates))
	}
	cl := c.ClientTLS()
	if cl.MinVersion != tls.VersionTLS13 || cl.RootCAs == nil || len(cl.Certificates) != 1 || cl.InsecureSkipVerify {
		t.Errorf("client config: min %x roots %v certs %d", cl.MinVersion, cl.RootCAs != nil, len(cl.Certificates))
	}
	var nilCfg *Config
	if nilCfg.Enabled() || nilCfg.ClientCredentials().Info().SecurityProtocol != "insecure" || nilCfg.ServerCredentials().Info().SecurityProtocol != "insecure" {
		t.Error("a nil *Config must mean plaintext")
	}
	if c.ClientCredentials().Info().SecurityProtocol != "tls" {
		t.Error("a loaded Config must give TLS credentials")
	}
}

// server starts a gRPC server with the health service on loopback and
// counts the calls that reach a handler.
func server(t *testing.T, creds credentials.TransportCredentials) (addr string, calls *atomic.Int64) {
	t.Helper()
	calls = new(atomic.Int64)
	srv := grpc.NewServer(grpc.Creds(creds), grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		calls.Add(1)
		return h(ctx, req)
	}))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String(), calls
}

// TestRefusals dials a mutual-TLS server with every kind of client that
// must be refused, and one that must not. A refusal happens in the
// handshake: the RPC fails Unavailable with the TLS reason, and no handler
// runs.
func TestRefusals(t *testing.T) {
	p := newPKI(t)
	srvCfg := mustLoad(t, p.server)
	cliCfg := mustLoad(t, p.client)
	addr, calls := server(t, srvCfg.ServerCredentials())

	if err := testutil.HealthCheck(t, addr, cliCfg.DialOption()); err != nil {
		t.Fatalf("a client with a certificate of the CA was refused: %v", err)
	}
	if err := Probe(testutil.Context(t, 10*time.Second), addr, cliCfg.ClientTLS()); err != nil {
		t.Fatalf("Probe with a certificate of the CA = %v, want nil", err)
	}
	noCert := cliCfg.ClientTLS()
	noCert.Certificates = nil
	tls12 := cliCfg.ClientTLS()
	tls12.MinVersion, tls12.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	foreign := mustLoad(t, p.foreign).ClientTLS()
	foreign.RootCAs = cliCfg.ClientTLS().RootCAs // it trusts our server; we must not trust it
	for _, tc := range []struct {
		name string
		cfg  *tls.Config // nil: plaintext
		want string      // in the TLS error the server's verdict gives
	}{
		{"no client certificate", noCert, "remote error: tls: certificate required"},
		{"certificate of another CA", foreign, "remote error: tls: unknown certificate authority"},
		{"plaintext", nil, ""},
		{"TLS 1.2", tls12, "tls: protocol version not supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opt := grpc.WithTransportCredentials(insecure.NewCredentials())
			if tc.cfg != nil {
				opt = grpc.WithTransportCredentials(credentials.NewTLS(tc.cfg))
			}
			err := testutil.HealthCheck(t, addr, opt)
			t.Logf("refused: %v", err)
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("err = %v, want code Unavailable", err)
			}
			if tc.cfg == nil {
				testutil.AssertPlaintextRefused(t, addr, err)
				return
			}
			// The RPC may fail writing to the closed connection before it
			// reads the alert; Probe reads the verdict itself.
			perr := Probe(testutil.Context(t, 10*time.Second), addr, tc.cfg)
			if perr == nil || !strings.Contains(perr.Error(), tc.want) {
				t.Errorf("probe = %v, want %q", perr, tc.want)
			}
		})
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("%d calls reached a handler, want only the accepted client's 1", n)
	}

	t.Run("server of another CA", func(t *testing.T) {
		// The client refuses a server whose certificate the CA did not sign.
		faddr, fcalls := server(t, mustLoad(t, p.foreignServer).ServerCredentials())
		err := testutil.HealthCheck(t, faddr, cliCfg.DialOption())
		if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
			t.Errorf("err = %v, want Unavailable: certificate signed by unknown authority", err)
		}
		if fcalls.Load() != 0 {
			t.Error("a call reached the foreign server")
		}
	})
	t.Run("TLS client to plaintext server", func(t *testing.T) {
		paddr, pcalls := server(t, insecure.NewCredentials())
		err := testutil.HealthCheck(t, paddr, cliCfg.DialOption())
		if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "first record does not look like a TLS handshake") {
			t.Errorf("err = %v, want Unavailable: not a TLS handshake", err)
		}
		if pcalls.Load() != 0 {
			t.Error("a call reached the plaintext server")
		}
	})
}
