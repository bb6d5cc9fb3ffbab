package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/internal/fleet"
	"github.com/flotilla-kv/flotilla/internal/testutil"
	"github.com/flotilla-kv/flotilla/router"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// staticRoutes is a RouteSource over shards created through the Admin
// service (no placement): every shard's descriptor and the address of
// every node; leaders are left for the router to discover.
type staticRoutes struct {
	routes []*pb.Route // in key order
}

func newStaticRoutes(f *fleet.Fleet, shards int, nodes []uint64) *staticRoutes {
	addrs := map[uint64]string{}
	for _, n := range nodes {
		addrs[n] = f.Nodes[n].Addr
	}
	s := &staticRoutes{}
	for i := 1; i <= shards; i++ {
		s.routes = append(s.routes, &pb.Route{Shard: testutil.ShardDesc(i, shards, nodes), Addresses: addrs})
	}
	return s
}

func (s *staticRoutes) GetRoute(_ context.Context, key []byte, neighbours int) (*pb.Route, []*pb.Route, error) {
	for i, r := range s.routes {
		d := r.GetShard()
		if bytes.Compare(key, d.GetStart()) >= 0 && (len(d.GetEnd()) == 0 || bytes.Compare(key, d.GetEnd()) < 0) {
			var near []*pb.Route
			for j := max(0, i-neighbours); j <= min(len(s.routes)-1, i+neighbours); j++ {
				if j != i {
					near = append(near, s.routes[j])
				}
			}
			return r, near, nil
		}
	}
	return nil, nil, fmt.Errorf("no shard holds %q", key)
}

func (s *staticRoutes) ScanRoutes(_ context.Context, start, end []byte, limit int) ([]*pb.Route, error) {
	var out []*pb.Route
	for _, r := range s.routes {
		d := r.GetShard()
		if (len(d.GetEnd()) == 0 || bytes.Compare(start, d.GetEnd()) < 0) && (len(end) == 0 || bytes.Compare(d.GetStart(), end) < 0) {
			out = append(out, r)
			if len(out) == limit {
				break
			}
		}
	}
	return out, nil
}

// durabilityKills is the number of SIGKILLs of TestProcessDurabilityKills:
// 20 unless FLOTILLA_DURABILITY_KILLS says otherwise.
func durabilityKills(t *testing.T) int {
	v := os.Getenv("FLOTILLA_DURABILITY_KILLS")
	if v == "" {
		return 20
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("FLOTILLA_DURABILITY_KILLS=%q: want a positive integer", v)
	}
	return n
}

// TestProcessDurabilityKills: three shardnodes take heavy concurrent writes
// through the router while one of them is SIGKILLed and restarted over its
// data directory, 20 times in a row (the leader of the most shards, or the
// next node in turn when leadership is even). Afterwards every
// acknowledged write reads back with its last acknowledged value (or a
// later one whose outcome was unknown), and every replica of every shard
// has the same checksum at the same applied index.
func TestProcessDurabilityKills(t *testing.T) {
	kills := durabilityKills(t)
	const shards = 8
	h := newHarness(t, 3, 3, "--tick", "50ms")
	all := []uint64{1, 2, 3}
	h.createShards(shards, all)
	for i := 1; i <= shards; i++ {
		h.leader(i, all...)
	}
	c, err := router.New(testutil.Context(t, 10*time.Second), router.Config{
		RouteSource: newStaticRoutes(h.f, shards, all), AttemptTimeout: 2 * time.Second, Timeout: 15 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// Each writer writes fresh keys (each acknowledged one must be there
	// with its value) and overwrites one counter key of its own with an
	// increasing sequence: the final value must be at least the last
	// acknowledged one, and at most the last one attempted (a write whose
	// outcome was unknown may have applied).
	const writers = 16
	type counter struct {
		key       []byte
		acked     int // last acknowledged sequence, 0 if none
		attempted int // last sequence sent
	}
	counters := make([]*counter, writers)
	var (
		stop                      atomic.Bool
		wg                        sync.WaitGroup
		acks, failures, ambiguous atomic.Int64
		fresh                     sync.Map // key → value, acknowledged
	)
	for w := range writers {
		ctr := &counter{key: keyFor(w%shards+1, shards, fmt.Sprintf("counter-%d", w))}
		counters[w] = ctr
		wg.Go(func() {
			for i := 1; !stop.Load(); i++ {
				shard := (w+i)%shards + 1
				key := keyFor(shard, shards, fmt.Sprintf("w%02d-%06d", w, i))
				val := fmt.Sprintf("v%d", i)
				err := c.Put(context.Background(), key, []byte(val))
				switch {
				case err == nil:
					fresh.Store(string(key), val)
					acks.Add(1)
				case errors.Is(err, router.ErrAmbiguous):
					ambiguous.Add(1)
				default:
					failures.Add(1)
				}
				ctr.attempted = i
				err = c.Put(context.Background(), ctr.key, []byte(strconv.Itoa(i)))
				if err == nil {
					ctr.acked = i
					acks.Add(1)
				}
			}
		})
	}
	// progress waits until n more writes were acknowledged.
	progress := func(n int64, what string) {
		t.Helper()
		target := acks.Load() + n
		testutil.Eventually(t, 30*time.Second, func() error {
			if got := acks.Load(); got < target {
				return fmt.Errorf("%s: %d acknowledged writes, waiting for %d", what, got, target)
			}
			return nil
		})
	}

	began := time.Now()
	progress(100, "before the first kill")
	next := uint64(1)
	for k := 1; k <= kills; k++ {
		counts := h.leaderCounts(all...)
		victim := next
		for _, n := range all {
			if counts[n] > counts[victim] {
				victim = n
			}
		}
		next = next%3 + 1
		h.f.Nodes[victim].Kill()
		progress(50, fmt.Sprintf("kill %d: node %d down", k, victim))
		h.f.Nodes[victim].Restart()
		progress(50, fmt.Sprintf("kill %d: node %d restarted", k, victim))
		t.Logf("kill %d/%d: node %d (led %d of %d shards); %d writes acknowledged so far (%s)",
			k, kills, victim, counts[victim], shards, acks.Load(), time.Since(began).Round(time.Millisecond))
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d kills in %s: %d writes acknowledged, %d ambiguous, %d failed",
		kills, time.Since(began).Round(time.Millisecond), acks.Load(), ambiguous.Load(), failures.Load())

	// Every fresh key that was acknowledged is there with its value.
	fresh.Range(func(k, v any) bool {
		h.acked[k.(string)] = v.(string)
		return true
	})
	h.checkAcked(all...)
	// Every counter holds its last acknowledged value or a later attempt.
	for w, ctr := range counters {
		v, found, err := c.Get(testutil.Context(t, 10*time.Second), ctr.key)
		if err != nil {
			t.Fatalf("reading counter %d: %v", w, err)
		}
		got := 0
		if found {
			got, _ = strconv.Atoi(string(v))
		}
		if got < ctr.acked || got > ctr.attempted {
			t.Fatalf("counter %d = %d (found %v): last acknowledged %d, last attempted %d", w, got, found, ctr.acked, ctr.attempted)
		}
	}
	// Replicas agree: same checksum at the same index on every replica.
	for i := 1; i <= shards; i++ {
		testutil.Eventually(t, 30*time.Second, func() error {
			lead := h.leader(i, all...)
			cc, err := h.admin(lead).ConsistencyCheck(testutil.Context(t, 10*time.Second), &pb.ConsistencyCheckRequest{ShardId: uint64(i)})
			if err != nil {
				return err
			}
			if len(cc.GetChecksums()) != len(all) {
				return fmt.Errorf("shard %d: %d checksums, want %d: %v", i, len(cc.GetChecksums()), len(all), cc)
			}
			for _, r := range cc.GetChecksums() {
				if r.GetError() != "" || len(r.GetChecksum()) == 0 {
					return fmt.Errorf("shard %d: replica %d gave no checksum: %v", i, r.GetReplicaId(), r)
				}
			}
			if !cc.GetConsistent() {
				t.Fatalf("shard %d: replicas disagree at index %d: %v", i, cc.GetIndex(), cc.GetChecksums())
			}
			return nil
		})
	}
}
