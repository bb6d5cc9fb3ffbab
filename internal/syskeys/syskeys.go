// Package syskeys lays out the keys the fleet keeps for itself in the user
// key space, and encodes what they hold. It is a leaf: the router, the
// lessor and the shardnode share it.
package syskeys

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Leases keep their state in user keys of a reserved span, so that a
// lease's state lives in the shard owning its record key (its home),
// moves with splits like any key, and is replicated, snapshotted and
// versioned like any key (package lease serves them):
//
//	SystemPrefix + "lease/r/" + id (8 bytes, little-endian)         the record
//	SystemPrefix + "lease/k/" + id (8 bytes, little-endian) + key   one per key attached
//
// The ID is written little-endian so that its fastest-changing bytes come
// first: IDs are oracle timestamps, handed out in increasing order, and
// big-endian they would all fall at the end of the span, in one home
// shard however many the span is split into. Little-endian, consecutive
// leases spread over the span, and a split of a busy home shares its
// leases (and the index keys their puts write) between two shards.
//
// Keys from SystemPrefix on are the system's; clients should not write
// them (the router leaves them out of scans that do not start inside).
var (
	// SystemPrefix starts the reserved span of system keys.
	SystemPrefix = []byte("\xff\xffflotilla/")

	leaseRecordPrefix = []byte("\xff\xffflotilla/lease/r/")
	leaseIndexPrefix  = []byte("\xff\xffflotilla/lease/k/")
)

// SystemSpanStart returns the first key of the reserved span.
func SystemSpanStart() []byte { return bytes.Clone(SystemPrefix) }

// LeaseRecordKey returns the key of lease id's record.
func LeaseRecordKey(id uint64) []byte {
	return binary.LittleEndian.AppendUint64(bytes.Clone(leaseRecordPrefix), id)
}

// LeaseRecordSpan returns the span of every lease record.
func LeaseRecordSpan() (start, end []byte) {
	return bytes.Clone(leaseRecordPrefix), prefixEnd(leaseRecordPrefix)
}

// LeaseFromRecordKey returns the lease ID of a record key.
func LeaseFromRecordKey(k []byte) (uint64, bool) {
	if len(k) != len(leaseRecordPrefix)+8 || !bytes.HasPrefix(k, leaseRecordPrefix) {
		return 0, false
	}
	return binary.LittleEndian.Uint64(k[len(leaseRecordPrefix):]), true
}

// LeaseIndexKey returns the key recording that key may be attached to
// lease id.
func LeaseIndexKey(id uint64, key []byte) []byte {
	k := binary.LittleEndian.AppendUint64(bytes.Clone(leaseIndexPrefix), id)
	return append(k, key...)
}

// LeaseIndexSpan returns the span of lease id's index keys.
func LeaseIndexSpan(id uint64) (start, end []byte) {
	start = binary.LittleEndian.AppendUint64(bytes.Clone(leaseIndexPrefix), id)
	return start, prefixEnd(start)
}

// KeyFromLeaseIndex returns the attached key an index key names.
func KeyFromLeaseIndex(k []byte) ([]byte, bool) {
	if len(k) <= len(leaseIndexPrefix)+8 || !bytes.HasPrefix(k, leaseIndexPrefix) {
		return nil, false
	}
	return k[len(leaseIndexPrefix)+8:], true
}

// prefixEnd returns the first key after every key with prefix p (p must
// not be all 0xff bytes, which no prefix here is).
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] != 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	panic("syskeys: prefix of 0xff bytes only")
}

// LeaseRecord is the replicated state of one lease.
type LeaseRecord struct {
	// TTL is the lease's time to live, in seconds, as granted.
	TTL int64
	// RemainingMs is the remaining TTL as last checkpointed, in
	// milliseconds: a new home leader gives the lease at least this much
	// from when it takes over. It is never below what truly remains
	// (package lease keeps that invariant), so a leader change never cuts
	// a lease short.
	RemainingMs int64
	// Ended: the lease expired or was revoked, at the revision of the
	// record's version that says so. Its keys are being deleted; the
	// record goes when they are.
	Ended bool
}

const leaseRecordFormat = 1

// AppendEncoded appends r's encoding to dst.
func (r LeaseRecord) AppendEncoded(dst []byte) []byte {
	dst = append(dst, leaseRecordFormat)
	dst = binary.AppendVarint(dst, r.TTL)
	dst = binary.AppendVarint(dst, r.RemainingMs)
	if r.Ended {
		return append(dst, 1)
	}
	return append(dst, 0)
}

// ErrBadLeaseRecord: a lease record could not be decoded.
var ErrBadLeaseRecord = errors.New("syskeys: malformed lease record")

// DecodeLeaseRecord decodes a lease record.
func DecodeLeaseRecord(b []byte) (LeaseRecord, error) {
	if len(b) == 0 || b[0] != leaseRecordFormat {
		return LeaseRecord{}, fmt.Errorf("%w: format", ErrBadLeaseRecord)
	}
	b = b[1:]
	var r LeaseRecord
	var n int
	if r.TTL, n = binary.Varint(b); n <= 0 {
		return LeaseRecord{}, fmt.Errorf("%w: ttl", ErrBadLeaseRecord)
	}
	b = b[n:]
	if r.RemainingMs, n = binary.Varint(b); n <= 0 {
		return LeaseRecord{}, fmt.Errorf("%w: remaining", ErrBadLeaseRecord)
	}
	b = b[n:]
	if len(b) != 1 || b[0] > 1 {
		return LeaseRecord{}, fmt.Errorf("%w: ended", ErrBadLeaseRecord)
	}
	r.Ended = b[0] == 1
	return r, nil
}
