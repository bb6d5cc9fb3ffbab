package shard

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
)

// The client table makes writes exactly-once. For each client it records
// the sequence number of the last write it applied, the log index (stamp)
// of the entry that applied it, and that write's result. The result is kept
// only in Pebble, under keys.ShardClientKey(shard, client); the in-memory
// table indexes the records by client and orders them by stamp.
//
// Both bounds are functions of the log alone, so every replica keeps
// exactly the same records:
//
//   - a record expires when the applying entry's index exceeds its stamp
//     by more than Config.ClientTTLEntries; an expired record is ignored
//     at once and deleted by the next write that applies;
//   - when a new client is recorded in a table of Config.MaxClients
//     records, the record with the lowest (stamp, client ID) is evicted.
//
// Records copied to the right-hand shard of a split get stamp 0: the new
// shard's log indexes are unrelated to the old one's.

// clientRecordFormat is the leading byte of a stored client record.
const clientRecordFormat byte = 1

// clientRecord is the in-memory part of one client's record. Records form a
// doubly linked list ordered by (stamp, id), oldest first.
type clientRecord struct {
	id    uint64
	seq   uint64
	stamp uint64

	prev, next *clientRecord
}

// clientTable is a shard's in-memory client index. It is owned by the
// worker applying the shard; it is not safe for concurrent use.
type clientTable struct {
	maxClients int
	ttl        uint64

	byID       map[uint64]*clientRecord
	head, tail *clientRecord // oldest, newest
}

func newClientTable(maxClients int, ttl uint64) *clientTable {
	return &clientTable{maxClients: maxClients, ttl: ttl, byID: make(map[uint64]*clientRecord)}
}

// load replaces the table's contents with recs, in any order.
func (t *clientTable) load(recs []clientRecord) {
	slices.SortFunc(recs, func(a, b clientRecord) int {
		return cmp.Or(cmp.Compare(a.stamp, b.stamp), cmp.Compare(a.id, b.id))
	})
	clear(t.byID)
	t.head, t.tail = nil, nil
	for i := range recs {
		r := recs[i]
		t.pushBack(&r)
	}
}

func (t *clientTable) len() int { return len(t.byID) }

// isExpired reports whether r no longer counts when applying index.
func (t *clientTable) isExpired(r *clientRecord, index uint64) bool {
	return index > r.stamp && index-r.stamp > t.ttl
}

// lookup returns the live record of client id at index, or nil.
func (t *clientTable) lookup(id, index uint64) *clientRecord {
	r := t.byID[id]
	if r == nil || t.isExpired(r, index) {
		return nil
	}
	return r
}

// popExpired removes the oldest record if it is expired at index and
// returns its client ID. Call it until ok is false.
func (t *clientTable) popExpired(index uint64) (id uint64, ok bool) {
	r := t.head
	if r == nil || !t.isExpired(r, index) {
		return 0, false
	}
	t.remove(r)
	return r.id, true
}

// upsert records that client id applied seq at index, which must not be
// lower than any stamp in the table. When it adds a client to a full
// table it evicts the oldest record and returns its client ID.
func (t *clientTable) upsert(id, seq, index uint64) (evicted uint64, ok bool) {
	if t.tail != nil && t.tail.stamp > index {
		panic(fmt.Sprintf("shard: client table stamp %d after index %d", t.tail.stamp, index))
	}
	if r := t.byID[id]; r != nil {
		t.unlink(r)
		r.seq, r.stamp = seq, index
		t.link(r)
		return 0, false
	}
	if len(t.byID) >= t.maxClients {
		old := t.head
		t.remove(old)
		evicted, ok = old.id, true
	}
	t.pushBack(&clientRecord{id: id, seq: seq, stamp: index})
	return evicted, ok
}

// pushBack appends r, which must sort after every record.
func (t *clientTable) pushBack(r *clientRecord) {
	t.byID[r.id] = r
	t.link(r)
}

func (t *clientTable) link(r *clientRecord) {
	r.prev, r.next = t.tail, nil
	if t.tail != nil {
		t.tail.next = r
	} else {
		t.head = r
	}
	t.tail = r
}

func (t *clientTable) unlink(r *clientRecord) {
	if r.prev != nil {
		r.prev.next = r.next
	} else {
		t.head = r.next
	}
	if r.next != nil {
		r.next.prev = r.prev
	} else {
		t.tail = r.prev
	}
	r.prev, r.next = nil, nil
}

func (t *clientTable) remove(r *clientRecord) {
	t.unlink(r)
	delete(t.byID, r.id)
}

// appendClientRecord appends a stored client record:
//
//	byte     format (1)
//	uvarint  seq
//	uvarint  stamp
//	result   (see Result.appendEncoded)
func appendClientRecord(dst []byte, seq, stamp uint64, res *Result) []byte {
	dst = append(dst, clientRecordFormat)
	dst = binary.AppendUvarint(dst, seq)
	dst = binary.AppendUvarint(dst, stamp)
	return res.appendEncoded(dst)
}

// decodeClientRecord decodes a stored client record.
func decodeClientRecord(b []byte) (seq, stamp uint64, res *Result, err error) {
	d := decoder{buf: b}
	if f := d.byte(); d.err == nil && f != clientRecordFormat {
		d.fail(fmt.Errorf("unknown client record format %d", f))
	}
	seq = d.uvarint()
	stamp = d.uvarint()
	res = decodeResultFrom(&d)
	if err := d.finish(); err != nil {
		return 0, 0, nil, err
	}
	return seq, stamp, res, nil
}

// restampClientRecord re-encodes a stored record with a new stamp.
func restampClientRecord(dst, b []byte, stamp uint64) ([]byte, error) {
	seq, _, res, err := decodeClientRecord(b)
	if err != nil {
		return nil, err
	}
	return appendClientRecord(dst, seq, stamp, res), nil
}
