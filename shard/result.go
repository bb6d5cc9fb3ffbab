package shard

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// Result is the outcome of a write command that applied (or was found
// already applied by exactly-once deduplication). Apply returns either a
// *Result or an error; a Result is read-only once returned, and Results of
// plain successes may be shared between calls.
type Result struct {
	// Succeeded is false only for a CompareAndSwap whose comparison failed.
	Succeeded bool
	// Found and Value: for a failed CompareAndSwap, whether the key existed
	// and the value it held (which did not match). For a Delete, Found
	// says whether it deleted a version (the key existed and, for a
	// delete conditional on a lease, was attached to it). Unset otherwise.
	Found bool
	Value []byte
	// Left and Right: for a Split, the shard's descriptor after the split
	// and the new right-hand shard's descriptor.
	Left, Right *Descriptor
	// Revision: for a Put, Delete, CompareAndSwap or Batch, the revision
	// it was applied at (its versions' revision; a failed CompareAndSwap
	// and a Delete of an absent key wrote none, but were evaluated at it).
	Revision uint64
	// Txn: for a Txn, its outcome (Succeeded is Txn.Succeeded).
	Txn *TxnResult
	// Status: for a CheckTxn, the transaction's outcome (Revision is its
	// commit revision if it committed). The steps of transactions across
	// shards are never recorded in the client table, so Status is not
	// part of the encoding.
	Status TxnStatus
	// Index: for a Checksum, the log index it was computed at (its Value is
	// the checksum). Checksums are never recorded in the client table, so
	// Index is not part of the encoding.
	Index uint64
	// CollectedKeys and CollectedTxns: for a GC, how many deleted keys
	// and outcome records it collected. Collections are never recorded
	// in the client table, so they are not part of the encoding.
	CollectedKeys, CollectedTxns int
}

// resultFormat is the leading byte of an encoded Result (as stored in the
// client table). Format 2 added the revision.
const resultFormat byte = 2

const (
	resultSucceeded byte = 1 << iota
	resultFound
	resultSplit
	resultTxn
)

// appendEncoded appends r's encoding:
//
//	byte     format (2)
//	byte     flags (bit 0 succeeded, bit 1 found, bit 2 split, bit 3 txn)
//	uvarint  revision
//	bytes  value (only with found)
//	left and right descriptors (only with split)
//	the txn result (only with txn; see appendTxnResult)
func (r *Result) appendEncoded(dst []byte) []byte {
	var flags byte
	if r.Succeeded {
		flags |= resultSucceeded
	}
	if r.Found {
		flags |= resultFound
	}
	split := r.Left != nil && r.Right != nil
	if split {
		flags |= resultSplit
	}
	if r.Txn != nil {
		flags |= resultTxn
	}
	dst = append(dst, resultFormat, flags)
	dst = binary.AppendUvarint(dst, r.Revision)
	if r.Found {
		dst = appendBytes(dst, r.Value)
	}
	if split {
		dst = r.Left.AppendEncoded(dst)
		dst = r.Right.AppendEncoded(dst)
	}
	if r.Txn != nil {
		dst = appendTxnResult(dst, r.Txn)
	}
	return dst
}

// decodeResultFrom reads a Result from d; its slices do not alias the input.
func decodeResultFrom(d *decoder) *Result {
	if f := d.byte(); d.err == nil && f != resultFormat {
		d.fail(fmt.Errorf("unknown result format %d", f))
	}
	flags := d.byte()
	if flags&^(resultSucceeded|resultFound|resultSplit|resultTxn) != 0 {
		d.fail(fmt.Errorf("unknown result flags %#x", flags))
	}
	r := &Result{Succeeded: flags&resultSucceeded != 0, Found: flags&resultFound != 0, Revision: d.uvarint()}
	if d.err != nil {
		return nil
	}
	if r.Found {
		r.Value = bytes.Clone(d.bytes())
		if r.Value == nil {
			r.Value = []byte{}
		}
	}
	if flags&resultSplit != 0 {
		l, rr := decodeDescriptorFrom(d), decodeDescriptorFrom(d)
		r.Left, r.Right = &l, &rr
	}
	if flags&resultTxn != 0 {
		r.Txn = decodeTxnResult(d, 0)
	}
	if d.err != nil {
		return nil
	}
	return r
}
