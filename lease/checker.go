package lease

import (
	"context"
	"sync"
)

// checkerEntries bounds how many leases a Checker remembers.
const checkerEntries = 100_000

// Checker tells a node's reads whether the leases of the keys they found
// were alive at the read's revision, asking each lease's home and
// remembering the answers: a promise (alive through a revision) serves
// every later read at or below it, and an end every read at or above it.
// Safe for concurrent use.
type Checker struct {
	fleet  Fleet
	oracle Oracle

	mu    sync.Mutex
	known map[uint64]Status // Until and Ended only
}

// NewChecker returns a Checker asking fleet (the node's router) and
// taking fresh timestamps from oracle.
func NewChecker(fleet Fleet, oracle Oracle) *Checker {
	return &Checker{fleet: fleet, oracle: oracle, known: map[uint64]Status{}}
}

// Dead returns the leases among ids that were not alive at rev. A read
// of the latest state passes latest: it read at the shard's resolved
// revision, which may be long past on an idle shard, so the leases are
// checked at a fresh oracle timestamp instead, taken after the read
// arrived: a lease whose end was decided before the read began is dead.
func (c *Checker) Dead(ctx context.Context, ids []uint64, rev uint64, latest bool) (map[uint64]bool, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	if latest {
		ts, err := c.oracle.Next(ctx, 1)
		if err != nil {
			return nil, err
		}
		rev = max(rev, uint64(ts))
	}
	var dead map[uint64]bool
	for _, id := range ids {
		alive, err := c.alive(ctx, id, rev)
		if err != nil {
			return nil, err
		}
		if !alive {
			if dead == nil {
				dead = map[uint64]bool{}
			}
			dead[id] = true
		}
	}
	return dead, nil
}

func (c *Checker) alive(ctx context.Context, id, rev uint64) (bool, error) {
	c.mu.Lock()
	k, ok := c.known[id]
	c.mu.Unlock()
	if ok {
		switch {
		case k.Until != 0 && rev <= k.Until:
			return true, nil
		case k.Ended != 0 && rev >= k.Ended:
			return false, nil
		}
	}
	st, err := c.fleet.Status(ctx, id, rev)
	if err != nil {
		return false, err
	}
	c.mu.Lock()
	k = c.known[id]
	if st.Until > k.Until {
		k.Until = st.Until
	}
	if st.Ended != 0 && (k.Ended == 0 || st.Ended < k.Ended) {
		k.Ended = st.Ended
	}
	if _, ok := c.known[id]; !ok && len(c.known) >= checkerEntries {
		for old := range c.known {
			delete(c.known, old)
			break
		}
	}
	c.known[id] = k
	c.mu.Unlock()
	return st.Alive, nil
}
