package syskeys

import (
	"bytes"
	"errors"
	"testing"
)

func TestLeaseKeys(t *testing.T) {
	for _, id := range []uint64{1, 1 << 40, 0x0123456789abcdef, ^uint64(0) >> 1} {
		got, ok := LeaseFromRecordKey(LeaseRecordKey(id))
		if !ok || got != id {
			t.Fatalf("record key of %d decodes to %d, %v", id, got, ok)
		}
		start, end := LeaseRecordSpan()
		if k := LeaseRecordKey(id); bytes.Compare(k, start) < 0 || bytes.Compare(k, end) >= 0 || !bytes.HasPrefix(k, SystemPrefix) {
			t.Fatalf("record key %q outside the record span [%q, %q)", k, start, end)
		}
		istart, iend := LeaseIndexSpan(id)
		ik := LeaseIndexKey(id, []byte("svc/a"))
		if bytes.Compare(ik, istart) < 0 || bytes.Compare(ik, iend) >= 0 {
			t.Fatalf("index key %q outside its lease's span [%q, %q)", ik, istart, iend)
		}
		if key, ok := KeyFromLeaseIndex(ik); !ok || string(key) != "svc/a" {
			t.Fatalf("index key names %q, %v", key, ok)
		}
	}
	if _, ok := LeaseFromRecordKey([]byte("svc/a")); ok {
		t.Fatal("a user key read as a lease record key")
	}
}

// TestLeaseRecordKeysSpread: consecutive IDs (oracle timestamps of one
// millisecond) are not neighbours in key order, so they spread over the
// record span's shards.
func TestLeaseRecordKeysSpread(t *testing.T) {
	const base = uint64(1_780_000_000_000) << 18
	lo, hi := LeaseRecordKey(base), LeaseRecordKey(base)
	for i := range uint64(256) {
		k := LeaseRecordKey(base + i)
		if bytes.Compare(k, lo) < 0 {
			lo = k
		}
		if bytes.Compare(k, hi) > 0 {
			hi = k
		}
	}
	// The first key byte after the prefix takes every value.
	n := len(leaseRecordPrefix)
	if lo[n] != 0 || hi[n] != 0xff {
		t.Fatalf("256 consecutive IDs span first bytes %#x to %#x", lo[n], hi[n])
	}
}

func TestLeaseRecordEncoding(t *testing.T) {
	for _, r := range []LeaseRecord{{TTL: 10, RemainingMs: 10_000}, {TTL: 9_000_000_000, RemainingMs: 1}, {TTL: 5, Ended: true}} {
		got, err := DecodeLeaseRecord(r.AppendEncoded(nil))
		if err != nil || got != r {
			t.Fatalf("%+v round-trips to %+v, %v", r, got, err)
		}
	}
	good := LeaseRecord{TTL: 10, RemainingMs: 5}.AppendEncoded(nil)
	for _, bad := range [][]byte{nil, {2}, good[:len(good)-1], append(good[:len(good):len(good)], 0), {1, 20, 10, 7}} {
		if _, err := DecodeLeaseRecord(bad); !errors.Is(err, ErrBadLeaseRecord) {
			t.Fatalf("%x decodes with %v", bad, err)
		}
	}
}
