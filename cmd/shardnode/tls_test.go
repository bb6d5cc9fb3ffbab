package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/internal/fleet"
	"github.com/flotilla-kv/flotilla/internal/testutil"
	"github.com/flotilla-kv/flotilla/internal/tlsconfig"
	"github.com/flotilla-kv/flotilla/router"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// Mutual TLS with real processes: a TLS fleet serves through the router,
// every kind of unauthenticated client is refused by shardnode and
// placementd alike, and a node started without TLS never joins.

// foreignClient returns client credentials from a CA the fleet does not
// trust (the client itself trusts the fleet's CA, so only the server's
// check can refuse it).
func foreignClient(t *testing.T, f *fleet.Fleet) *tls.Config {
	t.Helper()
	ca, err := tlsconfig.NewDevCA(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	files, err := tlsconfig.WriteDevFiles(ca, filepath.Join(t.TempDir(), "foreign"), "client", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := tlsconfig.Load(files)
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.ClientTLS()
	c.RootCAs = f.ClientTLSConfig().ClientTLS().RootCAs
	return c
}

func TestProcessTLSFleet(t *testing.T) {
	f := fleet.New(t, 3, "--heartbeat-interval", "250ms", "--forward")
	f.EnableTLS()
	f.AddPlacement(3, "--heartbeat-interval", "250ms", "--schedule-interval", "250ms", "--initial-shards", "4")
	f.StartPlacement()
	f.Start()
	pc := pb.NewPlacementClient(f.Placement[1].Conn())

	// Shards with a leader and three replicas each: placement's replicas
	// elected a leader among themselves, its Admin calls created the
	// shards, the nodes' Raft traffic elected their leaders and the nodes'
	// heartbeats reported them, all over mutual TLS.
	var shards []*pb.ShardStatus
	testutil.Eventually(t, 90*time.Second, func() error {
		resp, err := pc.ListShards(testutil.Context(t, 5*time.Second), &pb.ListShardsRequest{})
		if err != nil {
			return err
		}
		if len(resp.GetShards()) != 4 {
			return fmt.Errorf("%d shards, want 4", len(resp.GetShards()))
		}
		for _, s := range resp.GetShards() {
			if s.GetRoute().GetLeaderNodeId() == 0 || len(s.GetRoute().GetShard().GetReplicas()) != 3 {
				return fmt.Errorf("shard %d: leader %d, %d replicas", s.GetRoute().GetShard().GetShardId(), s.GetRoute().GetLeaderNodeId(), len(s.GetRoute().GetShard().GetReplicas()))
			}
		}
		shards = resp.GetShards()
		return nil
	})

	// The router's framed KV connections run the same mutual TLS when
	// given the client's configuration (FramedTLS); a router that has
	// TLS only in its gRPC credentials is refused them and calls over
	// gRPC.
	for _, framedTLS := range []bool{true, false} {
		t.Run(fmt.Sprintf("router puts and gets with the client certificate, framed TLS %v", framedTLS), func(t *testing.T) {
			cfg := router.Config{
				PlacementAddresses: strings.Split(f.PlacementAddrs(), ","),
				DialOptions:        []grpc.DialOption{f.ClientTLSConfig().DialOption()},
			}
			if framedTLS {
				cfg.FramedTLS = f.ClientTLSConfig().ClientTLS()
			}
			r, err := router.New(testutil.Context(t, 10*time.Second), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			for i := range 40 {
				key := []byte{byte(i * 256 / 40), 'k', byte('0' + i%10)}
				if err := r.Put(testutil.Context(t, 20*time.Second), key, fmt.Appendf(nil, "v%d", i)); err != nil {
					t.Fatalf("put %q: %v", key, err)
				}
			}
			for i := range 40 {
				key := []byte{byte(i * 256 / 40), 'k', byte('0' + i%10)}
				v, found, err := r.Get(testutil.Context(t, 20*time.Second), key)
				if err != nil || !found || string(v) != fmt.Sprintf("v%d", i) {
					t.Fatalf("get %q = %q, %v, %v; want v%d", key, v, found, err, i)
				}
			}
			st := r.Stats()
			if framedTLS && (st.FramedRPCs == 0 || st.FramedFallbacks != 0) {
				t.Fatalf("with FramedTLS: %d framed RPCs of %d, %d fallbacks", st.FramedRPCs, st.RPCs, st.FramedFallbacks)
			}
			if !framedTLS && (st.FramedRPCs != 0 || st.FramedFallbacks == 0) {
				t.Fatalf("without FramedTLS: %d framed RPCs of %d, %d fallbacks", st.FramedRPCs, st.RPCs, st.FramedFallbacks)
			}
		})
	}

	t.Run("a follower forwards to the leader over TLS", func(t *testing.T) {
		s := shards[0].GetRoute()
		var follower uint64
		for _, rep := range s.GetShard().GetReplicas() {
			if rep.GetNodeId() != s.GetLeaderNodeId() {
				follower = rep.GetNodeId()
			}
		}
		kv := pb.NewKVClient(f.Nodes[follower].Conn())
		key := append(append([]byte(nil), s.GetShard().GetStart()...), 0, 'f', 'w', 'd') // inside the shard
		testutil.Eventually(t, 20*time.Second, func() error {
			_, err := kv.Put(testutil.Context(t, 5*time.Second), &pb.PutRequest{
				Header: &pb.RequestHeader{ShardId: s.GetShard().GetShardId()}, Key: key, Value: []byte("x")})
			return err
		})
	})

	// Every process refuses every client that is not mutual TLS with a
	// certificate of the fleet's CA. The refusal is in the handshake, so
	// the call fails Unavailable and names the TLS reason.
	noCert := f.ClientTLSConfig().ClientTLS()
	noCert.Certificates = nil
	tls12 := f.ClientTLSConfig().ClientTLS()
	tls12.MinVersion, tls12.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	refusals := []struct {
		name string
		cfg  *tls.Config // nil: plaintext
		want string      // in the TLS error the server's verdict gives
	}{
		{"plaintext", nil, ""},
		{"no client certificate", noCert, "remote error: tls: certificate required"},
		{"certificate of another CA", foreignClient(t, f), "remote error: tls: unknown certificate authority"},
		{"TLS 1.2", tls12, "tls: protocol version not supported"},
	}
	targets := map[string]string{"shardnode": f.Nodes[1].Addr, "placementd": f.Placement[2].Addr}
	for _, rf := range refusals {
		for what, addr := range targets {
			t.Run(what+" refuses "+rf.name, func(t *testing.T) {
				opt := grpc.WithTransportCredentials(insecure.NewCredentials())
				if rf.cfg != nil {
					opt = grpc.WithTransportCredentials(credentials.NewTLS(rf.cfg))
				}
				err := testutil.HealthCheck(t, addr, opt)
				if status.Code(err) != codes.Unavailable {
					t.Fatalf("err = %v, want code Unavailable", err)
				}
				if rf.cfg == nil {
					testutil.AssertPlaintextRefused(t, addr, err)
					return
				}
				// The RPC may fail writing to the connection the server
				// closed before reading its alert; Probe reads the verdict.
				if perr := tlsconfig.Probe(testutil.Context(t, 10*time.Second), addr, rf.cfg); perr == nil || !strings.Contains(perr.Error(), rf.want) {
					t.Errorf("probe = %v, want %q", perr, rf.want)
				}
			})
		}
	}
	t.Run("the client certificate is accepted", func(t *testing.T) {
		for what, addr := range targets {
			if err := testutil.HealthCheck(t, addr, f.ClientTLSConfig().DialOption()); err != nil {
				t.Errorf("%s: %v", what, err)
			}
			if err := tlsconfig.Probe(testutil.Context(t, 10*time.Second), addr, f.ClientTLSConfig().ClientTLS()); err != nil {
				t.Errorf("%s: probe = %v", what, err)
			}
		}
	})

	t.Run("a plaintext node cannot register", func(t *testing.T) {
		n := f.Add("--heartbeat-interval", "250ms")
		n.Plaintext = true
		n.Restart()
		// Its registration fails in the handshake, again and again...
		testutil.Eventually(t, 30*time.Second, func() error {
			if c := strings.Count(n.Log(), `msg="registering with placement"`); c < 2 {
				return fmt.Errorf("%d failed registrations logged, want 2", c)
			}
			return nil
		})
		if log := n.Log(); !strings.Contains(log, "code = Unavailable") || !testutil.ClosedByServer(log) {
			t.Fatalf("registration failed for another reason than TLS; log:\n%s", log)
		}
		// ...so placement never lists it nor gives it a replica.
		resp, err := pc.ListNodes(testutil.Context(t, 5*time.Second), &pb.ListNodesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, node := range resp.GetNodes() {
			if node.GetNodeId() == n.ID {
				t.Fatalf("placement lists the plaintext node: %v", node)
			}
		}
		if len(resp.GetNodes()) != 3 {
			t.Errorf("placement lists %d nodes, want 3", len(resp.GetNodes()))
		}
		info, err := pb.NewAdminClient(n.Conn()).GetNodeInfo(testutil.Context(t, 5*time.Second), &pb.NodeInfoRequest{})
		if err != nil || info.GetShards() != 0 {
			t.Errorf("plaintext node info = %v, %v; want no shard", info, err)
		}
	})
}

// TestProcessPlaintextNodeNeverJoinsAGroup gives a shard replicas on two
// TLS nodes and one plaintext node: the TLS pair elects a leader and
// commits, while every Raft message between them and the plaintext node is
// refused, so its replica never hears of a leader nor of a committed entry.
func TestProcessPlaintextNodeNeverJoinsAGroup(t *testing.T) {
	f := fleet.New(t, 3, "--log-level", "debug")
	f.EnableTLS()
	f.Nodes[3].Plaintext = true
	f.Start()
	nodes := []uint64{1, 2, 3}
	admin := func(n uint64) pb.AdminClient { return pb.NewAdminClient(f.Nodes[n].Conn()) }
	desc := testutil.ShardDesc(1, 1, nodes)
	for _, n := range nodes {
		if _, err := admin(n).CreateReplica(testutil.Context(t, 10*time.Second), &pb.CreateReplicaRequest{Shard: desc}); err != nil {
			t.Fatalf("create the shard on node %d: %v", n, err)
		}
	}
	// The TLS nodes elect a leader between them and commit a write.
	var leader uint64
	testutil.Eventually(t, 30*time.Second, func() error {
		for _, n := range []uint64{1, 2} {
			info, err := admin(n).GetShardInfo(testutil.Context(t, 2*time.Second), &pb.ShardInfoRequest{ShardId: 1})
			if err == nil && info.GetIsLeader() {
				leader = n
				return nil
			}
		}
		return errors.New("no leader among the TLS nodes")
	})
	testutil.Eventually(t, 20*time.Second, func() error {
		_, err := pb.NewKVClient(f.Nodes[leader].Conn()).Put(testutil.Context(t, 5*time.Second), &pb.PutRequest{
			Header: &pb.RequestHeader{ShardId: 1}, Key: []byte("k"), Value: []byte("v")})
		return err
	})
	lead, err := admin(leader).GetShardInfo(testutil.Context(t, 5*time.Second), &pb.ShardInfoRequest{ShardId: 1})
	if err != nil {
		t.Fatal(err)
	}
	// Both sides tried to talk to the other and were refused in the
	// handshake: the plaintext node's framed connections to the TLS nodes
	// end with the server's EOF, and so do the gRPC streams it falls back
	// to; the leader's stream to it fails its TLS handshake.
	testutil.Eventually(t, 30*time.Second, func() error {
		for _, n := range []uint64{leader, 3} {
			info, err := admin(n).GetNodeInfo(testutil.Context(t, 5*time.Second), &pb.NodeInfoRequest{})
			if err != nil {
				return err
			}
			if info.GetTransport().GetStreamFailures() < 2 {
				return fmt.Errorf("node %d: %d raft stream failures, want at least 2", n, info.GetTransport().GetStreamFailures())
			}
		}
		return nil
	})
	if log := f.Nodes[3].Log(); !strings.Contains(log, "raft connection to peer ended") || !testutil.ClosedByServer(log) {
		t.Errorf("the plaintext node's raft streams did not fail in the handshake; log:\n%s", log)
	}
	if log := f.Nodes[leader].Log(); !strings.Contains(log, "first record does not look like a TLS handshake") {
		t.Errorf("the leader's raft stream to the plaintext node did not fail its TLS handshake; log:\n%s", log)
	}
	// The plaintext replica never learnt of the leader nor of the commit,
	// though the leader has been heartbeating it since the election.
	info, err := admin(3).GetShardInfo(testutil.Context(t, 5*time.Second), &pb.ShardInfoRequest{ShardId: 1})
	if err != nil {
		t.Fatal(err)
	}
	if info.GetLeaderNodeId() != 0 || info.GetCommit() >= lead.GetCommit() || info.GetApplied() >= lead.GetApplied() {
		t.Errorf("plaintext replica: leader node %d, commit %d, applied %d; leader's commit %d, applied %d: it must have heard nothing",
			info.GetLeaderNodeId(), info.GetCommit(), info.GetApplied(), lead.GetCommit(), lead.GetApplied())
	}
	for _, p := range lead.GetProgress() {
		if p.GetReplicaId() == desc.GetReplicas()[2].GetReplicaId() && p.GetMatch() >= lead.GetCommit() {
			t.Errorf("the leader believes the plaintext replica matched index %d", p.GetMatch())
		}
	}
}

// TestTLSFlagsAllOrNone checks the flag validation and the startup errors.
func TestTLSFlagsAllOrNone(t *testing.T) {
	base := []string{"--node-id", "1", "--data-dir", t.TempDir()}
	_, err := parseConfig(append(base, "--tls-cert", "a.crt", "--log-level", "loud"))
	if err == nil || !strings.Contains(err.Error(), "--tls-key and --tls-ca missing") || !strings.Contains(err.Error(), "loud") {
		t.Fatalf("partial TLS flags: err = %v, want the missing flags named with the other problems", err)
	}
	t.Setenv("FLOTILLA_TLS_KEY", "a.key")
	t.Setenv("FLOTILLA_TLS_CA", "ca.crt")
	cfg, err := parseConfig(append(base, "--tls-cert", "a.crt"))
	if err != nil || cfg.TLS != (tlsconfig.Files{Cert: "a.crt", Key: "a.key", CA: "ca.crt"}) {
		t.Fatalf("flags and environment = %+v, %v", cfg.TLS, err)
	}
	// Unreadable files stop the node at start, naming the flag and file.
	err = run(context.Background(), cfg)
	if !errors.Is(err, tlsconfig.ErrInvalid) || !strings.Contains(err.Error(), "--tls-cert") || !strings.Contains(err.Error(), "a.crt") {
		t.Fatalf("run with missing files = %v, want ErrInvalid naming --tls-cert a.crt", err)
	}
}
