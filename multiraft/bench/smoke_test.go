package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/flotilla-kv/flotilla/internal/poll"
	"github.com/flotilla-kv/flotilla/multiraft"
)

// TestWorkersSmoke runs three engines with real worker goroutines over
// MemNetwork: several groups, concurrent writers proposing to their
// group's leader and reading their own writes back at every consistency
// level. Every write and read must succeed (a write is retried only when
// it surely did not apply) and, at the end, every replica must hold every
// last value. Run it with -race.
func TestWorkersSmoke(t *testing.T) {
	const (
		groups  = 4
		writers = 4 // per group
		writes  = 50
	)
	goroutines := runtime.NumGoroutine()
	warned := warnings.Load()
	defer func() { t.Logf("the engines logged %d warnings", warnings.Load()-warned) }()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	net := newNetwork(t)
	nodes, engines := openMemNodes(t, net, 3)
	createGroups(t, 1, groups, nodes...)
	stopTicker := startTicker(t, engines...)
	leads, err := elect(ctx, 1, groups, nodes...)
	if err != nil {
		t.Fatal(err)
	}
	var leadMu sync.Mutex
	leaderOf := func(gi int) int {
		leadMu.Lock()
		defer leadMu.Unlock()
		return leads[gi]
	}

	var wg sync.WaitGroup
	for gi := range groups {
		g := multiraft.GroupID(1 + gi)
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				key := []byte(fmt.Sprintf("w%d", w))
				for i := range writes {
					value := binary.BigEndian.AppendUint64(nil, uint64(i))
					li, err := proposeUntilApplied(ctx, engines, leaderOf(gi), g, EncodePut(key, value))
					if err != nil {
						t.Errorf("group %d writer %d write %d: %v", g, w, i, err)
						return
					}
					if li != leaderOf(gi) {
						leadMu.Lock()
						leads[gi] = li
						leadMu.Unlock()
					}
					// Read our own write at every level the leader serves.
					for _, mode := range []multiraft.ReadMode{multiraft.ReadLinearizable, multiraft.ReadLease} {
						if err := engines[li].ReadBarrier(ctx, g, mode); err != nil {
							t.Errorf("group %d %v read after write %d: %v", g, mode, i, err)
							return
						}
						if got, err := readKey(nodes[li].db, g, key); err != nil || !bytes.Equal(got, value) {
							t.Errorf("group %d %v read of %s = %x (%v), want %x", g, mode, key, got, err, value)
							return
						}
					}
					// A stale read may be served by any replica.
					if err := engines[(li+1+i)%len(engines)].ReadBarrier(ctx, g, multiraft.ReadStale); err != nil {
						t.Errorf("group %d stale read: %v", g, err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	// Every replica converges on the leader's applied index and holds every
	// writer's last value.
	err = poll.Until(ctx, 0, 10*time.Millisecond, func(context.Context) error {
		applied := make(map[multiraft.GroupID][]uint64)
		for _, n := range nodes {
			for _, s := range n.e.Summaries() {
				applied[s.Group] = append(applied[s.Group], s.Applied)
			}
		}
		for g, a := range applied {
			if len(a) != len(nodes) || a[0] != a[1] || a[1] != a[2] {
				return fmt.Errorf("group %d applied %v", g, a)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("replicas did not converge: %v", err)
	}
	last := binary.BigEndian.AppendUint64(nil, writes-1)
	for _, n := range nodes {
		for gi := range groups {
			for w := range writers {
				key := []byte(fmt.Sprintf("w%d", w))
				if got, err := readKey(n.db, multiraft.GroupID(1+gi), key); err != nil || !bytes.Equal(got, last) {
					t.Errorf("node %d group %d key %s = %x (%v), want %x", n.id, 1+gi, key, got, err, last)
				}
			}
		}
	}

	stopTicker()
	closeMemNodes(t, net, nodes)
	// Every goroutine the engines and the network started is gone.
	err = poll.Until(ctx, 0, 10*time.Millisecond, func(context.Context) error {
		if n := runtime.NumGoroutine(); n > goroutines {
			return fmt.Errorf("%d goroutines, %d before", n, goroutines)
		}
		return nil
	})
	if err != nil {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines left, %d before:\n%s", runtime.NumGoroutine(), goroutines, buf[:runtime.Stack(buf, true)])
	}
}

// proposeUntilApplied proposes cmd to group, starting at engines[lead],
// and follows leader hints and retries for as long as the proposal surely
// did not apply. It returns the index of the engine that applied it.
func proposeUntilApplied(ctx context.Context, engines []*multiraft.Engine, lead int, g multiraft.GroupID, cmd []byte) (int, error) {
	for {
		_, err := engines[lead].Propose(ctx, g, cmd)
		if err == nil {
			return lead, nil
		}
		if !isSurelyNotApplied(err) || ctx.Err() != nil {
			return lead, err
		}
		if nl := (*multiraft.NotLeaderError)(nil); errors.As(err, &nl) && nl.Node != 0 {
			lead = int(nl.Node) - 1
			continue
		}
		// No leader known here: wait until some replica leads.
		err = poll.Until(ctx, 0, 10*time.Millisecond, func(context.Context) error {
			for i, e := range engines {
				for _, s := range e.Summaries() {
					if s.Group == g && s.Leading {
						lead = i
						return nil
					}
				}
			}
			return fmt.Errorf("no replica of group %d leads", g)
		})
		if err != nil {
			return lead, err
		}
	}
}

// readKey reads group's key from db; nil if absent.
func readKey(db *pebble.DB, g multiraft.GroupID, key []byte) ([]byte, error) {
	v, closer, err := db.Get(KVKey(g, key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	return bytes.Clone(v), nil
}
