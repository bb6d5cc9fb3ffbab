package tlsconfig

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// Flag names, shared by every binary.
const (
	FlagCert = "tls-cert"
	FlagKey  = "tls-key"
	FlagCA   = "tls-ca"
)

// ErrInvalid is wrapped by every error of Load: a file that cannot be
// read or parsed, a key that does not match its certificate, a
// certificate the CA did not sign.
var ErrInvalid = errors.New("tlsconfig: invalid TLS files")

// Files names the three PEM files of a process: its certificate (chain),
// its private key and the CA certificate(s) that sign every peer. The zero
// value means plaintext. Files is a plain value; copy it freely.
type Files struct {
	Cert string // the process's certificate, optionally followed by intermediates
	Key  string // the private key of Cert
	CA   string // the CA certificate(s) every peer's certificate must chain to
}

// RegisterFlags declares --tls-cert, --tls-key and --tls-ca on fs, writing
// into f. role completes the help text ("this node", "the client").
func (f *Files) RegisterFlags(fs *flag.FlagSet, role string) {
	fs.StringVar(&f.Cert, FlagCert, "", "PEM certificate of "+role+"; with --tls-key and --tls-ca it turns on mutual TLS: every gRPC connection is TLS 1.3 with certificates signed by the CA, and plaintext is refused (all three flags or none)")
	fs.StringVar(&f.Key, FlagKey, "", "PEM private key of --tls-cert")
	fs.StringVar(&f.CA, FlagCA, "", "PEM certificate of the CA that signs every peer's and client's certificate (see 'flotilla certs')")
}

// Enabled reports whether any of the three files is set.
func (f Files) Enabled() bool { return f.Cert != "" || f.Key != "" || f.CA != "" }

// Problems returns nil when all three files or none are set, and otherwise
// one problem naming the flags that are missing.
func (f Files) Problems() []string {
	if !f.Enabled() {
		return nil
	}
	var missing []string
	for _, x := range []struct{ name, v string }{{FlagCert, f.Cert}, {FlagKey, f.Key}, {FlagCA, f.CA}} {
		if x.v == "" {
			missing = append(missing, "--"+x.name)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return []string{fmt.Sprintf("TLS needs --%s, --%s and --%s together: %s missing", FlagCert, FlagKey, FlagCA, strings.Join(missing, " and "))}
}

// Args returns the command-line flags that pass f to a Flotilla binary,
// or nil for the zero Files.
func (f Files) Args() []string {
	if !f.Enabled() {
		return nil
	}
	return []string{"--" + FlagCert, f.Cert, "--" + FlagKey, f.Key, "--" + FlagCA, f.CA}
}

// Config is a loaded certificate and CA pool. It is immutable after Load
// and safe for concurrent use. A nil *Config means plaintext: its methods
// then return insecure credentials, so callers need no branch.
type Config struct {
	cert tls.Certificate
	pool *x509.CertPool
}

// Load reads and checks f. It returns (nil, nil) for the zero Files
// (plaintext), an error listing every problem for an incomplete Files, and
// an error wrapping ErrInvalid naming the file when a file cannot be read
// or parsed, the key does not match the certificate, or the certificate
// does not chain to the CA (peers would refuse it).
func Load(f Files) (*Config, error) {
	if !f.Enabled() {
		return nil, nil
	}
	if p := f.Problems(); p != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, strings.Join(p, "; "))
	}
	var errs []error
	caPEM, err := os.ReadFile(f.CA)
	if err != nil {
		errs = append(errs, fmt.Errorf("--%s: %w", FlagCA, err))
	}
	pool := x509.NewCertPool()
	if err == nil && !pool.AppendCertsFromPEM(caPEM) {
		errs = append(errs, fmt.Errorf("--%s %s: no PEM certificate in the file", FlagCA, f.CA))
	}
	certPEM, cerr := os.ReadFile(f.Cert)
	if cerr != nil {
		errs = append(errs, fmt.Errorf("--%s: %w", FlagCert, cerr))
	}
	keyPEM, kerr := os.ReadFile(f.Key)
	if kerr != nil {
		errs = append(errs, fmt.Errorf("--%s: %w", FlagKey, kerr))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%w: --%s %s with --%s %s: %w", ErrInvalid, FlagCert, f.Cert, FlagKey, f.Key, err)
	}
	inter := x509.NewCertPool()
	for _, der := range cert.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%w: --%s %s: %w", ErrInvalid, FlagCert, f.Cert, err)
		}
		inter.AddCert(c)
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("%w: --%s %s is not signed by the CA of --%s %s: %w", ErrInvalid, FlagCert, f.Cert, FlagCA, f.CA, err)
	}
	return &Config{cert: cert, pool: pool}, nil
}

// ServerTLS returns a new server configuration: TLS 1.3 at least, this
// certificate, and client certificates required and verified against the
// CA (tls.RequireAndVerifyClientCert). The caller owns the result.
func (c *Config) ServerTLS() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{c.cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    c.pool,
	}
}

// ClientTLS returns a new client configuration: TLS 1.3 at least, this
// certificate presented, and the server's certificate verified against
// the CA and the dialled host name (gRPC sets ServerName from the target).
// The caller owns the result. Nil for a nil c (plaintext), as
// router.Config.FramedTLS takes it.
func (c *Config) ClientTLS() *tls.Config {
	if c == nil {
		return nil
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{c.cert},
		RootCAs:      c.pool,
	}
}

// ServerCredentials returns the gRPC server credentials of c: mutual TLS,
// or plaintext for a nil c.
func (c *Config) ServerCredentials() credentials.TransportCredentials {
	if c == nil {
		return insecure.NewCredentials()
	}
	return credentials.NewTLS(c.ServerTLS())
}

// ClientCredentials returns the gRPC client credentials of c: mutual TLS,
// or plaintext for a nil c.
func (c *Config) ClientCredentials() credentials.TransportCredentials {
	if c == nil {
		return insecure.NewCredentials()
	}
	return credentials.NewTLS(c.ClientTLS())
}

// ServerOption returns grpc.Creds(c.ServerCredentials()).
func (c *Config) ServerOption() grpc.ServerOption { return grpc.Creds(c.ServerCredentials()) }

// DialOption returns grpc.WithTransportCredentials(c.ClientCredentials()).
func (c *Config) DialOption() grpc.DialOption {
	return grpc.WithTransportCredentials(c.ClientCredentials())
}

// Enabled reports whether c is TLS (not nil).
func (c *Config) Enabled() bool { return c != nil }

// Probe dials addr with cfg, completes the TLS handshake and waits for the
// server's first bytes, and returns nil if they came. It exists to learn a
// server's verdict on a client certificate deterministically: in TLS 1.3
// the client's handshake ends before the server has checked the client's
// certificate, so a refusal arrives as an alert on the first read (a gRPC
// server writes its HTTP/2 settings at once when it accepts), while an RPC
// may instead fail writing to the already-closed connection. The error is
// the dial, handshake or alert error ("remote error: tls: certificate
// required"). cfg is not modified.
func Probe(ctx context.Context, addr string, cfg *tls.Config) error {
	cfg = cfg.Clone()
	if len(cfg.NextProtos) == 0 {
		cfg.NextProtos = []string{"h2"}
	}
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return err
		}
		cfg.ServerName = host
	}
	d := tls.Dialer{Config: cfg}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetReadDeadline(dl)
	}
	var b [1]byte
	_, err = conn.Read(b[:])
	return err
}
