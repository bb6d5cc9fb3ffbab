package main

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/status"

	flt "github.com/flotilla-kv/flotilla/internal/fleet"
	"github.com/flotilla-kv/flotilla/internal/testutil"
	"github.com/flotilla-kv/flotilla/router"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// TestLockSweeperResolvesGoneClients: three shardnodes and placement, a
// bank of accounts over four shards. Transfers commit through the
// router; then three coordinators go away in the middle of a transfer
// (written here with raw KV calls, which resolve nothing): two after
// their prewrites, one after its commit point. Nobody reads the
// accounts, yet the nodes' sweepers remove every lock within the bound
// (TTL + sweep interval + resolution), rolling the first two back and
// the third forward, /metrics counts them, and the accounts then
// balance at one snapshot.
func TestLockSweeperResolvesGoneClients(t *testing.T) {
	const interval, ttl = 500 * time.Millisecond, time.Second
	f := flt.New(t, 3, "--heartbeat-interval", "250ms", "--lock-sweep-interval", interval.String())
	f.AddPlacement(1, "--heartbeat-interval", "250ms", "--schedule-interval", "250ms", "--initial-shards", "4")
	f.StartPlacement()
	f.Start()
	ctx := testutil.Context(t, 3*time.Minute)
	swept := func() float64 {
		total := 0.0
		for _, n := range f.Nodes {
			m, err := scrapeMetrics(n.HTTP)
			if err != nil {
				t.Fatal(err)
			}
			v, ok := m["flotilla_txn_locks_swept_total"]
			if !ok {
				// run (node.go) does not start the sweeper yet.
				t.Skipf("no flotilla_txn_locks_swept_total on node %s's /metrics: this shardnode runs no lock sweeper", n.HTTP)
			}
			if _, ok := m["flotilla_txn_locks_oldest_age_milliseconds"]; !ok {
				t.Fatalf("no flotilla_txn_locks_oldest_age_milliseconds on node %s's /metrics", n.HTTP)
			}
			total += v
		}
		return total
	}
	sweptBefore := swept()
	rc, err := router.New(ctx, router.Config{PlacementAddresses: strings.Split(f.PlacementAddrs(), ","), Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()

	const accounts, opening = 8, 100
	acct := func(i int) []byte { return []byte{byte(i * 256 / accounts), 'a', byte('0' + i)} }
	testutil.Eventually(t, time.Minute, func() error {
		for i := range accounts {
			if err := rc.Put(ctx, acct(i), []byte(strconv.Itoa(opening))); err != nil {
				return err
			}
		}
		return nil
	})
	balances := func(tx *router.Txn) []int {
		t.Helper()
		out := make([]int, accounts)
		for i := range accounts {
			got, err := tx.Get(ctx, acct(i))
			if err != nil {
				t.Fatal(err)
			}
			if out[i], err = strconv.Atoi(string(got.KV.Value)); err != nil {
				t.Fatal(err)
			}
		}
		return out
	}
	// Transfers that commit, across shards.
	for i := range accounts {
		tx, err := rc.Txn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		b := balances(tx)
		from, to := i, (i+3)%accounts
		_ = tx.Put(acct(from), []byte(strconv.Itoa(b[from]-10)))
		_ = tx.Put(acct(to), []byte(strconv.Itoa(b[to]+10)))
		if _, err := tx.Commit(ctx); err != nil {
			t.Fatalf("transfer %d: %v", i, err)
		}
	}
	tx, err := rc.Txn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	before := balances(tx)

	// kv returns a client of key's shard's leader, and the shard.
	kv := func(key []byte) (pb.KVClient, uint64) {
		t.Helper()
		var client pb.KVClient
		var id uint64
		testutil.Eventually(t, 20*time.Second, func() error {
			route, err := pb.NewPlacementClient(f.Placement[1].Conn()).GetRoute(ctx, &pb.GetRouteRequest{Key: key})
			if err != nil {
				return err
			}
			id = route.GetRoute().GetShard().GetShardId()
			for _, n := range f.Nodes {
				info, err := pb.NewAdminClient(n.Conn()).GetShardInfo(ctx, &pb.ShardInfoRequest{ShardId: id})
				if err == nil && info.GetIsLeader() {
					client = pb.NewKVClient(n.Conn())
					return nil
				}
			}
			return fmt.Errorf("no leader of shard %d", id)
		})
		return client, id
	}
	// goneTransfer moves amount from account from to account to and stops
	// after its prewrites, or after its commit point with committed.
	goneTransfer := func(from, to, amount int, committed bool) {
		t.Helper()
		start, err := rc.Now(ctx)
		if err != nil {
			t.Fatal(err)
		}
		primary := acct(from)
		var commit uint64
		for _, m := range []struct {
			key   []byte
			value int
		}{{acct(from), before[from] - amount}, {acct(to), before[to] + amount}} {
			testutil.Eventually(t, 20*time.Second, func() error {
				c, id := kv(m.key)
				resp, err := c.Prewrite(ctx, &pb.PrewriteRequest{Header: &pb.RequestHeader{ShardId: id}, Start: start, Primary: primary, TtlMs: uint64(ttl.Milliseconds()),
					Mutations: []*pb.Mutation{{Op: pb.Mutation_PUT, Key: m.key, Value: []byte(strconv.Itoa(m.value))}}})
				if err == nil {
					commit = max(commit, resp.GetRevision())
				}
				return err
			})
		}
		if committed {
			testutil.Eventually(t, 20*time.Second, func() error {
				c, id := kv(primary)
				_, err := c.CommitTxn(ctx, &pb.CommitTxnRequest{Header: &pb.RequestHeader{ShardId: id}, Start: start, Primary: primary, Commit: commit, Keys: [][]byte{primary}})
				return err
			})
		}
	}
	// locked lists the accounts a raw read finds locked.
	locked := func() []int {
		t.Helper()
		var out []int
		for i := range accounts {
			testutil.Eventually(t, 20*time.Second, func() error {
				c, id := kv(acct(i))
				_, err := c.Get(ctx, &pb.GetRequest{Header: &pb.RequestHeader{ShardId: id}, Key: acct(i)})
				for _, d := range status.Convert(err).Details() {
					if _, ok := d.(*pb.Locked); ok {
						out = append(out, i)
						return nil
					}
				}
				return err
			})
		}
		return out
	}

	began := time.Now()
	goneTransfer(0, 1, 7, false) // rolled back
	goneTransfer(2, 5, 9, false) // rolled back
	goneTransfer(4, 6, 11, true) // rolled forward: its secondary
	if got := locked(); time.Since(began) < ttl && len(got) != 5 {
		t.Fatalf("locked within the TTL: %v, want accounts 0, 1, 2, 5 and 6", got)
	}
	// The bound: the TTL, one interval, and the resolution's commands
	// with room for a loaded machine.
	bound := ttl + interval + 10*time.Second
	testutil.Eventually(t, bound, func() error {
		if got := locked(); len(got) > 0 {
			return fmt.Errorf("accounts still locked %v after the coordinators went: %v", time.Since(began).Round(time.Millisecond), got)
		}
		return nil
	})
	t.Logf("every lock swept %v after the first prewrite (TTL %v, interval %v)", time.Since(began).Round(time.Millisecond), ttl, interval)
	// The gone coordinators left 5 locks: both of each transfer stopped
	// after its prewrites, and the secondary of the one whose primary
	// committed. A sweep of a secondary first removes an expired primary
	// through its CheckTxn, which the count leaves out: at least one
	// lock of each transfer is counted.
	if n := swept() - sweptBefore; n < 3 {
		t.Fatalf("the sweepers counted %v locks swept, want at least one of each of the 3 transfers", n)
	}

	tx, err = rc.Txn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	after := balances(tx)
	total := 0
	for i, b := range after {
		total += b
		want := before[i]
		switch i {
		case 4:
			want -= 11
		case 6:
			want += 11
		}
		if b != want {
			t.Errorf("account %d holds %d, want %d (before the gone transfers: %d)", i, b, want, before[i])
		}
	}
	if total != accounts*opening {
		t.Fatalf("the accounts total %d, want %d: %v", total, accounts*opening, after)
	}
}
