// Package framed holds what Flotilla's framed connections share: the
// Raft transport's (rpc/raftconn.go), the timestamp oracle's
// (rpc/tsoconn.go) and the KV calls' (kv.go). Each is a TCP connection
// opened on a server's gRPC port with a magic that tells it apart from
// gRPC, then mutual TLS when the fleet runs with it, then frames of its
// own. The KV connection's client side and wire format live here rather
// than in rpc, so that the router, a client library, uses them without
// importing the node's packages.
package framed

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"syscall"
	"time"
)

// HandshakeTimeout bounds the dial, TLS handshake and the kind's own
// hello and status of a new connection, and a server's wait for the
// magic.
const HandshakeTimeout = 5 * time.Second

// castagnoli is the CRC-32C table of the frames' checksums.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrUnsupported reports a peer that closed a new framed connection
// before answering it: a server whose listener does not demultiplex that
// kind (an older build). The sender then uses gRPC.
var ErrUnsupported = errors.New("framed: peer does not serve framed connections")

// DialMagic opens a framed connection of the kind magic names to addr:
// the dial, the magic, then TLS with tlsCfg unless it is nil (its
// ServerName taken from addr when empty). The connection's deadline is
// ctx's; the caller completes its own handshake and then clears it. A
// peer that closes the connection meanwhile fails it with an error
// wrapping ErrUnsupported.
func DialMagic(ctx context.Context, addr, magic string, tlsCfg *tls.Config) (net.Conn, error) {
	conn, err := dialRaw(ctx, nil, addr, magic)
	if err != nil {
		return nil, err
	}
	return clientTLS(ctx, conn, addr, tlsCfg)
}

// DialFunc opens a TCP connection to addr, bounded by ctx.
type DialFunc func(ctx context.Context, addr string) (net.Conn, error)

// dialRaw dials addr with dial (nil: the system's dialer) and writes
// first on the new connection, whose deadline is then ctx's. It fails as
// DialMagic does.
func dialRaw(ctx context.Context, dial DialFunc, addr, first string) (net.Conn, error) {
	if dial == nil {
		var d net.Dialer
		dial = func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}
	conn, err := dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	if _, err := io.WriteString(conn, first); err != nil {
		_ = conn.Close()
		return nil, UnsupportedIfClosed(err)
	}
	return conn, nil
}

// clientTLS completes the client's TLS handshake on conn when tlsCfg is
// not nil (its ServerName taken from addr when empty), and returns the
// connection to use; it closes conn when it fails, as DialMagic does.
func clientTLS(ctx context.Context, conn net.Conn, addr string, tlsCfg *tls.Config) (net.Conn, error) {
	if tlsCfg == nil {
		return conn, nil
	}
	fail := func(err error) (net.Conn, error) {
		_ = conn.Close()
		return nil, UnsupportedIfClosed(err)
	}
	cfg := tlsCfg.Clone()
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return fail(err)
		}
		cfg.ServerName = host
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return fail(err)
	}
	return tc, nil
}

// ServerTLS starts a framed connection's handshake on the server's side,
// under HandshakeTimeout (the caller clears the deadline after its
// own handshake step): TLS with tlsCfg unless it is nil. false: the
// TLS handshake failed.
func ServerTLS(conn net.Conn, tlsCfg *tls.Config) (net.Conn, bool) {
	_ = conn.SetDeadline(time.Now().Add(HandshakeTimeout))
	if tlsCfg == nil {
		return conn, true
	}
	tc := tls.Server(conn, tlsCfg)
	if err := tc.Handshake(); err != nil {
		return nil, false
	}
	return tc, true
}

// UnsupportedIfClosed turns the end of a connection during the handshake
// into ErrUnsupported.
func UnsupportedIfClosed(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
		return fmt.Errorf("%w: %w", ErrUnsupported, err)
	}
	return err
}
