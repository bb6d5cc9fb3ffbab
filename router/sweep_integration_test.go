package router

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/internal/testutil"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// TestSweepLocks: the locks of a client gone before its commit point are
// left alone while its TTL runs (pending) and rolled back after; those of
// a client gone after its commit point are committed forward at its
// commit revision. The locks are written and inspected with raw KV calls
// to the shards' leaders, which resolve nothing, so what removes them is
// SweepLocks (or a node's own sweeper, which resolves them alike).
func TestSweepLocks(t *testing.T) {
	c := newOracleCluster(t, 3, 4)
	// checks counts the primary's answers the client got: a sweep asks
	// once per transaction, however many of its locks it settles.
	var checks atomic.Int64
	r := c.client(func(cfg *Config) {
		cfg.DialOptions = append(cfg.DialOptions, grpc.WithChainUnaryInterceptor(
			func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
				err := invoker(ctx, method, req, reply, cc, opts...)
				if err == nil && strings.HasSuffix(method, "/CheckTxn") {
					checks.Add(1)
				}
				return err
			}))
	})
	ctx := testutil.Context(t, time.Minute)
	a, b := c.keyIn(1, "a"), c.keyIn(3, "b")
	for _, k := range [][]byte{a, b} {
		if err := r.Put(ctx, k, []byte("0")); err != nil {
			t.Fatal(err)
		}
	}
	kv := func(shard uint64) pb.KVClient {
		n, _ := c.leader(shard)
		return pb.NewKVClient(c.f.Nodes[n].Conn())
	}
	shardOf := map[string]uint64{string(a): 1, string(b): 3}
	// prewrite locks a and b for a transaction started now whose primary
	// is a, and returns the locks and the commit revision.
	prewrite := func(ttl time.Duration, value string) ([]*pb.Locked, uint64) {
		t.Helper()
		start, err := r.Now(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var locks []*pb.Locked
		var commit uint64
		for _, k := range [][]byte{a, b} {
			var resp *pb.PrewriteResponse
			testutil.Eventually(t, 20*time.Second, func() error {
				var err error
				resp, err = kv(shardOf[string(k)]).Prewrite(ctx, &pb.PrewriteRequest{
					Header: &pb.RequestHeader{ShardId: shardOf[string(k)]}, Start: start, Primary: a, TtlMs: uint64(ttl.Milliseconds()),
					Mutations: []*pb.Mutation{{Op: pb.Mutation_PUT, Key: k, Value: []byte(value)}},
				})
				return err
			})
			commit = max(commit, resp.GetRevision())
			locks = append(locks, &pb.Locked{Key: k, Start: start, Primary: a, Prewrite: resp.GetRevision(), TtlMs: uint64(ttl.Milliseconds())})
		}
		return locks, commit
	}
	// held reports whether k is locked, by a raw read at the latest
	// revision, which a lock refuses.
	held := func(k []byte) bool {
		t.Helper()
		var locked bool
		testutil.Eventually(t, 20*time.Second, func() error {
			_, err := kv(shardOf[string(k)]).Get(ctx, &pb.GetRequest{Header: &pb.RequestHeader{ShardId: shardOf[string(k)]}, Key: k})
			locked = false
			for _, d := range status.Convert(err).Details() {
				if _, ok := d.(*pb.Locked); ok {
					locked = true
				}
			}
			if err != nil && !locked {
				return err
			}
			return nil
		})
		return locked
	}

	// Gone before the commit point.
	ttl := 2 * time.Second
	began := time.Now()
	locks, _ := prewrite(ttl, "1")
	st, err := r.SweepLocks(ctx, locks)
	if time.Since(began) < ttl && (err != nil || st.Pending != 2 || st.Resolved != 0 || !held(a) || !held(b)) {
		t.Fatalf("a sweep within the TTL: %+v, %v", st, err)
	}
	testutil.Eventually(t, 20*time.Second, func() error {
		before := checks.Load()
		st, err := r.SweepLocks(ctx, locks)
		if err != nil || st.Resolved != 2 {
			return errors.Join(err, errors.New("not resolved yet"))
		}
		if n := checks.Load() - before; n != 1 {
			t.Fatalf("the sweep that resolved the 2 locks of one transaction asked its primary %d times", n)
		}
		return nil
	})
	if since := time.Since(began); since < ttl {
		t.Fatalf("rolled back %v after the start, before the TTL %v", since, ttl)
	}
	if held(a) || held(b) {
		t.Fatal("locks left after the sweep")
	}
	for _, k := range [][]byte{a, b} {
		if got, _, err := r.Get(ctx, k); err != nil || string(got) != "0" {
			t.Fatalf("%q after the rollback: %q, %v", k, got, err)
		}
	}

	// Gone after the commit point: the primary committed, b's lock is
	// committed forward, TTL or not.
	locks, commit := prewrite(time.Minute, "2")
	testutil.Eventually(t, 20*time.Second, func() error {
		_, err := kv(1).CommitTxn(ctx, &pb.CommitTxnRequest{Header: &pb.RequestHeader{ShardId: 1}, Start: locks[0].GetStart(), Primary: a, Commit: commit, Keys: [][]byte{a}})
		return err
	})
	if !held(b) {
		t.Fatal("b's lock is gone before the sweep")
	}
	if st, err := r.SweepLocks(ctx, locks[1:]); err != nil || st.Resolved != 1 {
		t.Fatalf("the sweep of b: %+v, %v", st, err)
	}
	if held(b) {
		t.Fatal("b's lock left after the sweep")
	}
	got, err := r.GetAt(ctx, b, 0)
	if err != nil || string(got.KV.Value) != "2" || got.KV.ModRevision != commit {
		t.Fatalf("b after the sweep: %+v, %v (commit %d)", got.KV, err, commit)
	}

	// A sweep whose context ended counts what it did not do as failed.
	done, cancel := context.WithCancel(ctx)
	cancel()
	if st, err := r.SweepLocks(done, locks); !errors.Is(err, context.Canceled) || st.Failed != 2 {
		t.Fatalf("a sweep with its context ended: %+v, %v", st, err)
	}
}
