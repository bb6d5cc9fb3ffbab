package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	etcdpb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	flt "github.com/flotilla-kv/flotilla/internal/fleet"
	"github.com/flotilla-kv/flotilla/internal/launch"
	"github.com/flotilla-kv/flotilla/internal/testutil"
	"github.com/flotilla-kv/flotilla/router"
)

// startEtcdFleet starts three shardnodes serving the etcd API
// (launch's Options.Etcd) and a placementd with four shards, stopped when
// the test ends.
func startEtcdFleet(ctx context.Context, t *testing.T) *launch.Fleet {
	t.Helper()
	flt.Binary(t, "placementd")
	bin := filepath.Dir(flt.Binary(t, "shardnode"))
	f, err := launch.Start(ctx, launch.Options{
		Dir: t.TempDir(), BinDir: bin, Nodes: 3, PlacementReplicas: 1, Shards: 4, Etcd: true,
		NodeArgs: []string{"--heartbeat-interval", "250ms"}, PlacementArgs: []string{"--heartbeat-interval", "250ms", "--schedule-interval", "250ms"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return f
}

// TestEtcdAPI: three shardnodes started with --etcd-listen (through
// launch's Options.Etcd) and placement with four shards. clientv3 reaches
// every node's etcd API: data written through the router reads back
// through each, a lease granted through one is seen through another, the
// member list names every node with its etcd URL, and Status names the
// fleet's cluster ID and the node as member.
func TestEtcdAPI(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	f := startEtcdFleet(ctx, t)
	rc, err := router.New(ctx, router.Config{PlacementAddresses: f.PlacementAddrs(), Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()

	clients := map[uint64]*clientv3.Client{}
	for _, n := range f.Nodes() {
		if n.EtcdAddr() == "" {
			t.Fatalf("node %d has no etcd address", n.ID)
		}
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{n.EtcdAddr()}, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients[n.ID] = c
	}

	// Keys in every shard (split at first bytes 0x40, 0x80, 0xc0).
	want := []string{"\x10/a", "\x50/b", "\x90/c", "\xd0/d"}
	for _, k := range want {
		testutil.Eventually(t, time.Minute, func() error {
			_, err := rc.PutRev(ctx, []byte(k), []byte("v"+k))
			return err
		})
	}
	for id, c := range clients {
		resp, err := c.Get(ctx, "", clientv3.WithFromKey())
		if err != nil {
			t.Fatalf("node %d: %v", id, err)
		}
		var got []string
		for _, kv := range resp.Kvs {
			got = append(got, string(kv.Key))
		}
		if !slices.Equal(got, want) || resp.Count != 4 || resp.Header.MemberId != id || resp.Header.ClusterId != clusterID("flotilla") {
			t.Fatalf("node %d: all keys %q, count %d, header %+v; want %q from member %d of cluster %x", id, got, resp.Count, resp.Header, want, id, clusterID("flotilla"))
		}
	}

	g, err := clients[3].Grant(ctx, 30)
	if err != nil {
		t.Fatal(err)
	}
	ttl, err := clients[1].TimeToLive(ctx, g.ID)
	if err != nil || ttl.GrantedTTL != 30 || ttl.TTL <= 0 {
		t.Fatalf("lease %d granted through node 3, through node 1: %v %+v", g.ID, err, ttl)
	}

	// Every node registers its etcd URL with placement as it starts.
	var wantMembers []string
	for _, n := range f.Nodes() {
		wantMembers = append(wantMembers, fmt.Sprintf("%d=http://%s", n.ID, n.EtcdAddr()))
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		ml, err := clients[2].MemberList(ctx)
		if err != nil {
			return err
		}
		var got []string
		for _, m := range ml.Members {
			got = append(got, fmt.Sprintf("%d=%s", m.ID, strings.Join(m.ClientURLs, ",")))
		}
		if !slices.Equal(got, wantMembers) {
			return fmt.Errorf("members %v, want %v", got, wantMembers)
		}
		return nil
	})
	st, err := clients[2].Status(ctx, f.Node(2).EtcdAddr())
	if err != nil {
		t.Fatal(err)
	}
	if st.Header.MemberId != 2 || st.Leader != 1 || st.Version != etcdAPIVersion || st.RaftIndex == 0 || st.RaftTerm == 0 || st.DbSize == 0 || st.DbSizeInUse != st.DbSize || len(st.Errors) != 0 {
		t.Fatalf("status of node 2: %+v; want member 2, leader 1, version %s, its raft and store figures", st, etcdAPIVersion)
	}
}

// TestEtcdAPITLS: in a mutual-TLS fleet the etcd API is served with the
// node's certificate: clientv3 with the fleet's client certificate reads
// through it, the member list gives https URLs, and a plaintext client
// is refused.
func TestEtcdAPITLS(t *testing.T) {
	flt.Binary(t, "placementd")
	bin := filepath.Dir(flt.Binary(t, "shardnode"))
	ctx := testutil.Context(t, 2*time.Minute)
	f, err := launch.Start(ctx, launch.Options{
		Dir: t.TempDir(), BinDir: bin, Nodes: 1, PlacementReplicas: 1, Shards: 1, ReplicationFactor: 1, Etcd: true, TLS: true,
		NodeArgs: []string{"--heartbeat-interval", "250ms"}, PlacementArgs: []string{"--heartbeat-interval", "250ms", "--schedule-interval", "250ms"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	addr := f.Node(1).EtcdAddr()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{addr}, TLS: f.ClientTLSConfig().ClientTLS(), DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	testutil.Eventually(t, time.Minute, func() error {
		_, err := c.Get(ctx, "tls/key")
		return err
	})
	testutil.Eventually(t, 30*time.Second, func() error {
		ml, err := c.MemberList(ctx)
		if err != nil {
			return err
		}
		if len(ml.Members) != 1 || len(ml.Members[0].ClientURLs) != 1 || ml.Members[0].ClientURLs[0] != "https://"+addr {
			return fmt.Errorf("members %+v, want node 1 at https://%s", ml.Members, addr)
		}
		return nil
	})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = etcdpb.NewKVClient(conn).Range(testutil.Context(t, 10*time.Second), &etcdpb.RangeRequest{Key: []byte("tls/key")})
	if err == nil {
		t.Fatal("a plaintext Range was served")
	}
	testutil.AssertPlaintextRefused(t, addr, err)
}
