package router

import (
	"bytes"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// routeCache holds one route per shard, ordered by start key and bounded
// with least-recently-used eviction. Cached ranges never overlap: inserting
// a route removes every cached route it overlaps, unless one of them is
// newer (route.supersedes), in which case the insert is refused. Safe for
// concurrent use; routes are immutable and shared with callers.
type routeCache struct {
	mu struct {
		sync.Mutex
		// byStart holds the cached routes sorted by start key; ranges are
		// disjoint, so ends are sorted too.
		byStart []*route
		// lru holds the same routes by shard ID and orders them by use; its
		// eviction callback removes a route from byStart.
		lru *simplelru.LRU[shardID, *route]
	}
	// evictions counts routes dropped for lack of room.
	evictions atomic.Uint64
}

func newRouteCache(size int) *routeCache {
	c := &routeCache{}
	lru, err := simplelru.NewLRU(size, c.onRemoveLocked)
	if err != nil {
		panic(fmt.Sprintf("router: route cache of size %d: %v", size, err))
	}
	c.mu.lru = lru
	return c
}

// onRemoveLocked is the LRU's callback, run for every route leaving it
// (eviction or removal) with mu held: it keeps byStart in step.
func (c *routeCache) onRemoveLocked(id shardID, r *route) {
	i, ok := c.indexLocked(r.start())
	if !ok || c.mu.byStart[i] != r {
		panic(fmt.Sprintf("router: route cache out of step: shard %d (%s) is in the LRU but not in the ordered index", id, r))
	}
	c.mu.byStart = slices.Delete(c.mu.byStart, i, i+1)
}

// indexLocked returns the index of the route starting at start, or where
// one would be inserted.
func (c *routeCache) indexLocked(start []byte) (int, bool) {
	return slices.BinarySearchFunc(c.mu.byStart, start, func(r *route, k []byte) int {
		return bytes.Compare(r.start(), k)
	})
}

// lookup returns the route whose range contains key and marks it used.
func (c *routeCache) lookup(key []byte) (*route, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.containingLocked(key)
	if r == nil {
		return nil, false
	}
	c.mu.lru.Get(r.id())
	return r, true
}

func (c *routeCache) containingLocked(key []byte) *route {
	// The last route starting at or before key is the only candidate.
	i, found := c.indexLocked(key)
	if !found {
		i--
	}
	if i < 0 {
		return nil
	}
	if r := c.mu.byStart[i]; r.contains(key) {
		return r
	}
	return nil
}

// get returns the cached route of shard id without marking it used.
func (c *routeCache) get(id shardID) (*route, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.lru.Peek(id)
}

// insert caches r and reports whether it did. It refuses r when a cached
// route it overlaps (or the cached route of the same shard) is newer;
// otherwise it removes all of them first. A route without a leader takes
// the leader of the cached route of its shard it replaces, if that node
// still hosts a replica.
func (c *routeCache) insert(r *route) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.insertLocked(r)
}

func (c *routeCache) insertLocked(r *route) bool {
	victims := c.overlappingLocked(r)
	if same, ok := c.mu.lru.Peek(r.id()); ok && !slices.Contains(victims, same) {
		victims = append(victims, same)
	}
	for _, o := range victims {
		if o.supersedes(r) {
			return false
		}
	}
	for _, o := range victims {
		if o.id() == r.id() && r.leaderNode == 0 && o.leaderNode != 0 && r.hasNode(o.leaderNode) {
			r = r.withLeader(o.leaderReplica, o.leaderNode)
		}
		c.mu.lru.Remove(o.id())
	}
	i, found := c.indexLocked(r.start())
	if found {
		panic(fmt.Sprintf("router: route cache: %s still overlaps %s after removing its overlaps", r, c.mu.byStart[i]))
	}
	c.mu.byStart = slices.Insert(c.mu.byStart, i, r)
	if c.mu.lru.Add(r.id(), r) {
		c.evictions.Add(1)
	}
	return true
}

// overlappingLocked returns the cached routes whose ranges intersect r's.
func (c *routeCache) overlappingLocked(r *route) []*route {
	i, found := c.indexLocked(r.start())
	if !found && i > 0 && c.mu.byStart[i-1].overlaps(r) {
		i--
	}
	var out []*route
	for ; i < len(c.mu.byStart) && c.mu.byStart[i].overlaps(r); i++ {
		out = append(out, c.mu.byStart[i])
	}
	return out
}

// invalidate removes the cached route of shard id if it is no newer than
// stale (the route a failed request used): a newer one, installed
// meanwhile by another request, stays. It reports whether it removed one.
func (c *routeCache) invalidate(stale *route) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	cur, ok := c.mu.lru.Peek(stale.id())
	if !ok || cur.supersedes(stale) {
		return false
	}
	c.mu.lru.Remove(stale.id())
	return true
}

// setLeader records that node (replica) leads shard id, if the shard is
// cached and node hosts one of its replicas. It reports whether the cached
// route changed.
func (c *routeCache) setLeader(id shardID, replica uint64, node nodeID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	cur, ok := c.mu.lru.Peek(id)
	if !ok || node == 0 || cur.leaderNode == node || !cur.hasNode(node) {
		return false
	}
	c.replaceLocked(cur, cur.withLeader(replica, node))
	return true
}

// clearLeader forgets the leader of shard id if it is node.
func (c *routeCache) clearLeader(id shardID, node nodeID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur, ok := c.mu.lru.Peek(id); ok && node != 0 && cur.leaderNode == node {
		c.replaceLocked(cur, cur.withLeader(0, 0))
	}
}

// replaceLocked puts next, a copy of the cached cur with another leader,
// in cur's place.
func (c *routeCache) replaceLocked(cur, next *route) {
	i, found := c.indexLocked(cur.start())
	if !found || c.mu.byStart[i] != cur {
		panic(fmt.Sprintf("router: route cache out of step: shard %d (%s) missing from the ordered index", cur.id(), cur))
	}
	c.mu.byStart[i] = next
	// Re-adding an existing key replaces its value (and marks it used); it
	// evicts nothing and calls no callback.
	c.mu.lru.Add(cur.id(), next)
}

// len returns the number of cached routes.
func (c *routeCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.mu.byStart)
}

// routes returns the cached routes in key order.
func (c *routeCache) routes() []*route {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.mu.byStart)
}
