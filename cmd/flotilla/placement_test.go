package main

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	flt "github.com/flotilla-kv/flotilla/internal/fleet"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// scriptedPlacement is a Placement server whose ListNodes answers what
// answer returns.
type scriptedPlacement struct {
	pb.UnimplementedPlacementServer
	answer func() error
	calls  atomic.Int64
}

func (s *scriptedPlacement) ListNodes(context.Context, *pb.ListNodesRequest) (*pb.ListNodesResponse, error) {
	s.calls.Add(1)
	if err := s.answer(); err != nil {
		return nil, err
	}
	return &pb.ListNodesResponse{Nodes: []*pb.Node{{NodeId: 1}}}, nil
}

func servePlacementScript(t *testing.T, answer func() error) (*scriptedPlacement, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &scriptedPlacement{answer: answer}
	srv := grpc.NewServer()
	pb.RegisterPlacementServer(srv, s)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return s, lis.Addr().String()
}

// silentAddr accepts connections and never says a word, like a paused
// process or a host whose packets vanish after the handshake.
func silentAddr(t *testing.T) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	return lis.Addr().String()
}

func listNodes(t *testing.T, timeout time.Duration, addrs ...string) (time.Duration, error) {
	t.Helper()
	conn, err := dialPlacement(addrs, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	_, err = pb.NewPlacementClient(conn).ListNodes(ctx, &pb.ListNodesRequest{})
	return time.Since(start), err
}

func TestPlacementConnFailsOver(t *testing.T) {
	ok := func() error { return nil }
	good, goodAddr := servePlacementScript(t, ok)

	// A stopped replica first: the next one answers, at once.
	if el, err := listNodes(t, 10*time.Second, flt.FreePort(t), goodAddr); err != nil || el > time.Second {
		t.Fatalf("refused, then good: %v after %s", err, el)
	}
	// A replica that accepts and says nothing is given up after the
	// connect timeout, well within the command's.
	if el, err := listNodes(t, 10*time.Second, silentAddr(t), goodAddr); err != nil || el > placementConnectTimeout+2*time.Second {
		t.Fatalf("silent, then good: %v after %s", err, el)
	}
	// A follower with no leader yet answers Unavailable: go round again
	// until the election ends.
	var until = time.Now().Add(500 * time.Millisecond)
	_, electing := servePlacementScript(t, func() error {
		if time.Now().Before(until) {
			return status.Error(codes.Unavailable, "placement: no leader elected yet; retry")
		}
		return nil
	})
	if _, err := listNodes(t, 10*time.Second, electing); err != nil {
		t.Fatalf("through an election: %v", err)
	}
	// Any other answer is placement's: returned as it is.
	_, notFound := servePlacementScript(t, func() error { return status.Error(codes.NotFound, "no such node") })
	before := good.calls.Load()
	if _, err := listNodes(t, 10*time.Second, notFound, goodAddr); status.Code(err) != codes.NotFound {
		t.Fatalf("want placement's NotFound, got %v", err)
	}
	if good.calls.Load() != before {
		t.Fatal("a final answer was retried at another address")
	}
	// Nothing reachable: at once, naming every address.
	a, b := flt.FreePort(t), flt.FreePort(t)
	el, err := listNodes(t, 10*time.Second, a, b)
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), a) || !strings.Contains(err.Error(), b) || el > time.Second {
		t.Fatalf("nothing reachable: %v after %s", err, el)
	}
	if _, err := dialPlacement(nil); err == nil {
		t.Fatal("no address accepted")
	}
}

// TestParseTakesFlagsAfterArguments: "get hello --consistency lease" is
// what people type; "--" ends the flags.
func TestParseTakesFlagsAfterArguments(t *testing.T) {
	cmd, pos := parsed(t, "get", "hello", "--consistency", "lease", "--json")
	if len(pos) != 1 || pos[0] != "hello" || flagValue(t, cmd, "consistency") != "lease" || flagValue(t, cmd, "json") != "true" {
		t.Fatalf("pos %q consistency %q json %q", pos, flagValue(t, cmd, "consistency"), flagValue(t, cmd, "json"))
	}
	cmd, pos = parsed(t, "put", "--", "-k", "--json")
	if strings.Join(pos, " ") != "-k --json" || flagValue(t, cmd, "json") != "false" {
		t.Fatalf("after --: pos %q json %q", pos, flagValue(t, cmd, "json"))
	}
	cmd, pos = parsed(t, "get", "k", "-w", "json", "--limit=3", "--prefix")
	if strings.Join(pos, " ") != "k" || flagValue(t, cmd, "write-out") != "json" || flagValue(t, cmd, "limit") != "3" {
		t.Fatalf("-w json: pos %q write-out %q limit %q", pos, flagValue(t, cmd, "write-out"), flagValue(t, cmd, "limit"))
	}
	if _, stderr, code := runCLI(t, "get", "a", "b", "c", "--placement", flt.FreePort(t)); code != exitUsage {
		t.Fatalf("three keys for get: exit %d: %s", code, stderr)
	}
}

// TestScanRefusesEndBeforeStart: a usage error, before any connection.
func TestScanRefusesEndBeforeStart(t *testing.T) {
	if _, stderr, code := runCLI(t, "scan", "--start", "m", "--end", "a", "--placement", flt.FreePort(t)); code != exitUsage ||
		!strings.Contains(stderr, "sorts before --start") {
		t.Fatalf("exit %d, want a usage error: %s", code, stderr)
	}
}
