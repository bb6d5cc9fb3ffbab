package testutil

import (
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// HealthCheck calls gRPC's health service at addr over a connection of
// its own, dialled with opt (credentials, or insecure for plaintext), and
// returns the call's error. The connection is closed before it returns.
func HealthCheck(t testing.TB, addr string, opt grpc.DialOption) error {
	t.Helper()
	conn, err := grpc.NewClient(addr, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = healthpb.NewHealthClient(conn).Check(Context(t, 10*time.Second), &healthpb.HealthCheckRequest{})
	return err
}

// ClosedByServer reports whether msg, an error a plaintext client logged
// or returned, says the server closed the connection under it. A server
// that wants TLS closes a plaintext connection on its first bytes; the
// client sees that as EOF where it reads the server's preface, or, when
// the close lands while it is still writing its own, as a reset or a
// broken pipe. Which one it sees is a race, so a test must accept all
// three.
func ClosedByServer(msg string) bool {
	for _, s := range []string{"error reading server preface", "connection reset", "broken pipe"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// AssertPlaintextRefused checks that err, of a plaintext RPC to the
// mutual-TLS server at addr, failed with the connection, and that the
// server answers an HTTP/2 preface sent in the clear by closing the
// connection without a byte (a gRPC server that accepted it would send
// its settings).
func AssertPlaintextRefused(t testing.TB, addr string, err error) {
	t.Helper()
	if !ClosedByServer(err.Error()) {
		t.Errorf("err = %v, want the connection closed by the server", err)
	}
	conn, derr := net.DialTimeout("tcp", addr, 5*time.Second)
	if derr != nil {
		t.Fatal(derr)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, werr := conn.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")); werr != nil {
		return // closed already
	}
	n, rerr := conn.Read(make([]byte, 64))
	if n != 0 || rerr == nil || errors.Is(rerr, os.ErrDeadlineExceeded) {
		t.Errorf("plaintext HTTP/2 preface answered with %d bytes, %v; want the connection closed", n, rerr)
	}
}
