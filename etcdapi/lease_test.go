package etcdapi

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestLease runs etcd's Lease service through clientv3 (and its raw
// stream where clientv3 hides the answer) against a real fleet.
func TestLease(t *testing.T) {
	a := startAPI(t)
	ctx := testCtx(t)
	raw := pb.NewLeaseClient(a.client.ActiveConnection())

	var chosen clientv3.LeaseID
	t.Run("grant", func(t *testing.T) {
		g, err := a.client.Grant(ctx, 30)
		if err != nil {
			t.Fatal(err)
		}
		if g.ID <= 0 || g.TTL != 30 || g.ResponseHeader.Revision <= 0 {
			t.Fatalf("grant: ID %d, TTL %d, revision %d; want a positive ID, TTL 30, the grant's revision", g.ID, g.TTL, g.ResponseHeader.Revision)
		}
		chosen = g.ID
		g, err = a.client.Grant(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		if g.TTL < 1 {
			t.Fatalf("grant of TTL 0: TTL %d, want raised to the fleet's minimum", g.TTL)
		}
	})

	t.Run("grant with an ID", func(t *testing.T) {
		resp, err := raw.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: 4242, TTL: 30})
		if err != nil {
			t.Fatal(err)
		}
		if resp.ID != 4242 || resp.TTL != 30 {
			t.Fatalf("grant of 4242: ID %d, TTL %d", resp.ID, resp.TTL)
		}
		_, err = raw.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: 4242, TTL: 30})
		if err == nil || err.Error() != rpctypes.ErrGRPCLeaseExist.Error() {
			t.Fatalf("second grant of 4242: %v, want %v", err, rpctypes.ErrGRPCLeaseExist)
		}
		_, err = raw.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: -5, TTL: 30})
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("grant of a negative ID: %v, want InvalidArgument", err)
		}
		if _, err := a.client.Grant(ctx, maxLeaseTTL+1); !errors.Is(err, rpctypes.ErrLeaseTTLTooLarge) {
			t.Fatalf("grant of TTL %d: %v, want %v", maxLeaseTTL+1, err, rpctypes.ErrLeaseTTLTooLarge)
		}
	})

	t.Run("time to live", func(t *testing.T) {
		if _, err := a.router.PutLease(ctx, []byte("lease/k1"), []byte("v"), uint64(chosen)); err != nil {
			t.Fatal(err)
		}
		ttl, err := a.client.TimeToLive(ctx, chosen, clientv3.WithAttachedKeys())
		if err != nil {
			t.Fatal(err)
		}
		if ttl.ID != chosen || ttl.TTL <= 0 || ttl.TTL > 30 || ttl.GrantedTTL != 30 || len(ttl.Keys) != 1 || string(ttl.Keys[0]) != "lease/k1" {
			t.Fatalf("time to live of %d: %+v; want TTL in (0, 30], granted 30, keys [lease/k1]", chosen, ttl)
		}
		get, err := a.client.Get(ctx, "lease/k1")
		if err != nil || len(get.Kvs) != 1 || get.Kvs[0].Lease != int64(chosen) {
			t.Fatalf("lease/k1: %v %+v; want attached to %d", err, get, chosen)
		}
		// etcd answers a lease that does not exist with TTL -1, no error.
		ttl, err = a.client.TimeToLive(ctx, 987654321)
		if err != nil || ttl.TTL != -1 || ttl.ID != 987654321 {
			t.Fatalf("time to live of an unknown lease: %v %+v; want TTL -1", err, ttl)
		}
	})

	t.Run("leases", func(t *testing.T) {
		resp, err := a.client.Leases(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ids []int64
		for _, l := range resp.Leases {
			ids = append(ids, int64(l.ID))
		}
		if !slices.Contains(ids, int64(chosen)) || !slices.Contains(ids, 4242) || !slices.IsSorted(ids) {
			t.Fatalf("leases %v: want %d and 4242, in order", ids, chosen)
		}
	})

	t.Run("keep alive once", func(t *testing.T) {
		ka, err := a.client.KeepAliveOnce(ctx, 4242)
		if err != nil {
			t.Fatal(err)
		}
		if ka.ID != 4242 || ka.TTL != 30 {
			t.Fatalf("keepalive of 4242: ID %d, TTL %d; want TTL 30", ka.ID, ka.TTL)
		}
		if _, err := a.client.KeepAliveOnce(ctx, 987654321); !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			t.Fatalf("keepalive of an unknown lease: %v, want %v", err, rpctypes.ErrLeaseNotFound)
		}
	})

	t.Run("keep alive stream", func(t *testing.T) {
		// An unknown lease and a negative ID are answered with TTL 0;
		// a live one with its TTL; every answer names its lease.
		stream, err := raw.LeaseKeepAlive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range []int64{987654321, -3, 4242} {
			if err := stream.Send(&pb.LeaseKeepAliveRequest{ID: id}); err != nil {
				t.Fatal(err)
			}
		}
		got := map[int64]int64{}
		for range 3 {
			resp, err := stream.Recv()
			if err != nil {
				t.Fatal(err)
			}
			got[resp.ID] = resp.TTL
			if resp.Header == nil || resp.Header.MemberId != 1 {
				t.Fatalf("keepalive answer without this member's header: %+v", resp)
			}
		}
		if got[987654321] != 0 || got[-3] != 0 || got[4242] != 30 || len(got) != 3 {
			t.Fatalf("keepalive answers %v; want unknown and negative 0, 4242 30", got)
		}
		if err := stream.CloseSend(); err != nil {
			t.Fatal(err)
		}

		// clientv3's KeepAlive keeps a short lease alive past its TTL.
		g, err := a.client.Grant(ctx, 3)
		if err != nil {
			t.Fatal(err)
		}
		granted := time.Now()
		kctx, cancel := context.WithCancel(ctx)
		defer cancel()
		ch, err := a.client.KeepAlive(kctx, g.ID)
		if err != nil {
			t.Fatal(err)
		}
		answers := 0
		past := time.After(time.Duration(g.TTL+2) * time.Second)
	wait:
		for {
			select {
			case resp, ok := <-ch:
				if !ok {
					t.Fatalf("keepalive channel closed after %d answers", answers)
				}
				if resp.ID != g.ID || resp.TTL != g.TTL {
					t.Fatalf("keepalive answer %+v, want ID %d TTL %d", resp, g.ID, g.TTL)
				}
				answers++
			case <-past:
				break wait
			case <-ctx.Done():
				t.Fatal(ctx.Err())
			}
		}
		ttl, err := a.client.TimeToLive(ctx, g.ID)
		if err != nil || ttl.TTL <= 0 {
			t.Fatalf("lease kept alive %s past its %ds TTL: %v %+v; want alive", time.Since(granted).Round(time.Millisecond), g.TTL, err, ttl)
		}
		if answers < 3 {
			t.Fatalf("%d keepalive answers in %s, want one every third of the TTL", answers, time.Since(granted).Round(time.Millisecond))
		}
	})

	t.Run("revoke", func(t *testing.T) {
		resp, err := a.client.Revoke(ctx, chosen)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Header.Revision <= 0 {
			t.Fatalf("revoke header %+v: want the revision the lease ended at", resp.Header)
		}
		get, err := a.client.Get(ctx, "lease/k1")
		if err != nil || len(get.Kvs) != 0 {
			t.Fatalf("lease/k1 after revoke: %v %+v; want gone", err, get.Kvs)
		}
		ttl, err := a.client.TimeToLive(ctx, chosen)
		if err != nil || ttl.TTL != -1 {
			t.Fatalf("time to live after revoke: %v %+v; want TTL -1", err, ttl)
		}
		if _, err := a.client.Revoke(ctx, chosen); !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			t.Fatalf("second revoke: %v, want %v", err, rpctypes.ErrLeaseNotFound)
		}
		if _, err := a.client.Revoke(ctx, -1); !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			t.Fatalf("revoke of a negative ID: %v, want %v", err, rpctypes.ErrLeaseNotFound)
		}
	})
}
