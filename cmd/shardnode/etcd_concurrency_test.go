package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"github.com/flotilla-kv/flotilla/internal/testutil"
)

// TestEtcdConcurrencyUnderNodeKills runs etcd's own clientv3/concurrency
// Mutex and Election against the fleet's etcd API while the nodes are
// killed and restarted one at a time (a majority of every shard stays
// up). Each client's etcd endpoints are all three nodes, so it fails over
// as an etcd client fails over between members. The check: never two
// holders of the mutex (nor two leaders of the election) at once, each
// holder's fencing revision (its key's create revision) above the one
// before, and progress through every kill.
func TestEtcdConcurrencyUnderNodeKills(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a fleet and kills its nodes")
	}
	ctx := testutil.Context(t, 4*time.Minute)
	f := startEtcdFleet(ctx, t)
	var endpoints []string
	for _, n := range f.Nodes() {
		endpoints = append(endpoints, n.EtcdAddr())
	}
	newClient := func() *clientv3.Client {
		c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}

	var (
		stop     atomic.Bool
		holders  atomic.Int32
		leaders  atomic.Int32
		locks    atomic.Int64
		terms    atomic.Int64
		mu       sync.Mutex
		last     holding // the mutex's last holder
		failures []string
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		failures = append(failures, fmt.Sprintf(format, args...))
	}
	// session returns a live session of c, a new one when the last ended
	// (its lease expired while the client could not reach the fleet).
	session := func(c *clientv3.Client, s *concurrency.Session) *concurrency.Session {
		if s != nil {
			select {
			case <-s.Done():
			default:
				return s
			}
		}
		for !stop.Load() {
			ns, err := concurrency.NewSession(c, concurrency.WithTTL(10), concurrency.WithContext(ctx))
			if err == nil {
				return ns
			}
		}
		return nil
	}
	var wg sync.WaitGroup
	for w := range 4 {
		c := newClient()
		wg.Go(func() {
			var s *concurrency.Session
			for !stop.Load() {
				if s = session(c, s); s == nil {
					return
				}
				m := concurrency.NewMutex(s, "/locks/job")
				lctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				err := m.Lock(lctx)
				cancel()
				if err != nil {
					continue // timed out or the session ended: try again
				}
				if n := holders.Add(1); n != 1 {
					fail("client %d holds the mutex with %d others", w, n-1)
				}
				h := holding{client: w, key: m.Key(), fence: m.Header().Revision}
				if kresp, err := c.Get(ctx, m.Key()); err == nil && len(kresp.Kvs) == 1 {
					h.fence = kresp.Kvs[0].CreateRevision
				}
				mu.Lock()
				if err := h.follows(last); err != nil {
					failures = append(failures, err.Error())
				}
				last = h
				mu.Unlock()
				time.Sleep(5 * time.Millisecond) // the critical section
				holders.Add(-1)
				locks.Add(1)
				uctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				// A failed unlock leaves the key, which the session's next
				// Lock finds again: the client never let go.
				err = m.Unlock(uctx)
				cancel()
				mu.Lock()
				last.unlocked = err == nil
				mu.Unlock()
			}
		})
	}
	for w := range 2 {
		c := newClient()
		wg.Go(func() {
			var s *concurrency.Session
			for !stop.Load() {
				if s = session(c, s); s == nil {
					return
				}
				e := concurrency.NewElection(s, "/election/leader")
				cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				err := e.Campaign(cctx, fmt.Sprintf("candidate-%d", w))
				cancel()
				if err != nil {
					continue
				}
				if n := leaders.Add(1); n != 1 {
					fail("candidate %d leads with %d others", w, n-1)
				}
				// A proclaim may fail while a node is down; the term goes on.
				_ = e.Proclaim(ctx, fmt.Sprintf("candidate-%d-term", w))
				time.Sleep(5 * time.Millisecond)
				leaders.Add(-1)
				terms.Add(1)
				rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				_ = e.Resign(rctx)
				cancel()
			}
		})
	}

	progress := func(what string) {
		t.Helper()
		l0, t0 := locks.Load(), terms.Load()
		testutil.Eventually(t, time.Minute, func() error {
			if locks.Load() < l0+5 || terms.Load() < t0+3 {
				return fmt.Errorf("%s: %d locks and %d terms since", what, locks.Load()-l0, terms.Load()-t0)
			}
			return nil
		})
	}
	progress("before any kill")
	for _, n := range f.Nodes() {
		kctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := n.Kill(kctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		progress(fmt.Sprintf("node %d down", n.ID))
		if err := n.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		progress(fmt.Sprintf("node %d back", n.ID))
	}
	stop.Store(true)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	for _, f := range failures {
		t.Error(f)
	}
	t.Logf("%d locks, %d election terms, through a kill of every node", locks.Load(), terms.Load())
}

// holding is one acquisition of the mutex in
// TestEtcdConcurrencyUnderNodeKills.
type holding struct {
	client   int
	key      string
	fence    int64 // the create revision of the holder's key
	unlocked bool  // the holder's Unlock succeeded
}

// follows reports whether h may follow prev as the mutex's holder: its
// fence is above prev's, or it is prev's own key again because prev's
// Unlock failed (clientv3's Mutex then finds the session's key still in
// place, and holds it with the same create revision, as it should).
func (h holding) follows(prev holding) error {
	if h.fence > prev.fence {
		return nil
	}
	if h.fence == prev.fence && h.key == prev.key && h.client == prev.client && !prev.unlocked {
		return nil
	}
	return fmt.Errorf("client %d holds %q with fencing revision %d, not above client %d's %q at %d (unlocked: %v)",
		h.client, h.key, h.fence, prev.client, prev.key, prev.fence, prev.unlocked)
}
