package multiraft

import "go.etcd.io/raft/v3/raftpb"

// entryCache holds the most recent entries of one group's log, so the
// leader sends appends to followers without reading Pebble. It is a
// contiguous run ending at the log's last index, bounded by maxBytes.
// Owned by the group's worker; no lock.
type entryCache struct {
	maxBytes int64
	bytes    int64
	ents     []*raftpb.Entry // ents[i].Index == ents[0].Index + i
}

func entryBytes(e *raftpb.Entry) int64 { return int64(len(e.GetData())) + entryOverheadBytes }

// append adds ents (contiguous) to the cache, dropping any cached entries
// they overwrite and the oldest entries beyond the byte bound.
func (c *entryCache) append(ents []*raftpb.Entry) {
	if c.maxBytes <= 0 || len(ents) == 0 {
		return
	}
	first := ents[0].GetIndex()
	if n := len(c.ents); n > 0 {
		cfirst := c.ents[0].GetIndex()
		switch {
		case first < cfirst || first > c.ents[n-1].GetIndex()+1:
			c.clear()
		case first <= c.ents[n-1].GetIndex():
			for _, e := range c.ents[first-cfirst:] {
				c.bytes -= entryBytes(e)
			}
			clear(c.ents[first-cfirst:])
			c.ents = c.ents[:first-cfirst]
		}
	}
	for _, e := range ents {
		c.ents = append(c.ents, e)
		c.bytes += entryBytes(e)
	}
	drop := 0
	for c.bytes > c.maxBytes && drop < len(c.ents) {
		c.bytes -= entryBytes(c.ents[drop])
		drop++
	}
	c.dropFront(drop)
}

func (c *entryCache) dropFront(n int) {
	if n == 0 {
		return
	}
	clear(c.ents[:n])
	c.ents = c.ents[n:]
	if len(c.ents) == 0 {
		c.ents = nil
	}
}

// truncateFront drops cached entries below index.
func (c *entryCache) truncateFront(index uint64) {
	n := 0
	for n < len(c.ents) && c.ents[n].GetIndex() < index {
		c.bytes -= entryBytes(c.ents[n])
		n++
	}
	c.dropFront(n)
}

func (c *entryCache) clear() { c.ents, c.bytes = nil, 0 }

// get returns entries [lo, hi) limited to maxSize bytes (at least one) if
// the cache holds lo and everything up to hi or the size limit. The slice is
// a fresh copy that the caller may append to.
func (c *entryCache) get(lo, hi, maxSize uint64) ([]*raftpb.Entry, bool) {
	if len(c.ents) == 0 {
		return nil, false
	}
	first, last := c.ents[0].GetIndex(), c.ents[len(c.ents)-1].GetIndex()
	if lo < first || hi-1 > last {
		return nil, false
	}
	run := c.ents[lo-first : hi-first]
	var size uint64
	n := 0
	for n < len(run) {
		size += uint64(entryBytes(run[n]))
		if n > 0 && size > maxSize {
			break
		}
		n++
	}
	return append([]*raftpb.Entry(nil), run[:n]...), true
}

// term returns the term of entry i if cached.
func (c *entryCache) term(i uint64) (uint64, bool) {
	if len(c.ents) == 0 {
		return 0, false
	}
	first := c.ents[0].GetIndex()
	if i < first || i-first >= uint64(len(c.ents)) {
		return 0, false
	}
	return c.ents[i-first].GetTerm(), true
}
