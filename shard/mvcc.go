package shard

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/flotilla-kv/flotilla/internal/keys"
)

// Versions
//
// Every write stores a new version of each key it touches, at the write's
// revision (keys.MVCCKey: the user key, then the revision, newest first in
// Pebble's order), and never changes an older one. A version is a value or
// a tombstone:
//
//	value:     byte 1, uvarint create revision, uvarint version,
//	           uvarint lease (0: none), then the value's bytes
//	tombstone: byte 2
//
// The create revision is the revision of the write that created the key
// (its first put, or its first put after a delete), and version counts
// the writes to the key since then (1 after the creating put), as etcd
// counts them. A delete of a key that does not exist writes nothing. The
// mod revision is the version's own revision, in its key.
//
// Beside its versions, each key has one record of its current state, its
// meta, under the versions' common prefix (keys.AppendMVCCPrefix, which
// sorts just before them): whether it exists, the revision of its newest
// version, and its create revision, version and lease. A write reads the
// meta (StateMachine.latest: from memory, or a seek to the key's prefix
// that the bloom filters of every level serve, whose first key is the
// meta) and rewrites it:
//
//	meta:      byte 3 (exists) or 4 (deleted), uvarint mod revision,
//	           uvarint oldest revision, then, if it exists, uvarint
//	           create revision, version, lease
//
// The oldest revision is that of the key's oldest stored version, so that
// a prune whose horizon is below it knows without a seek that it has
// nothing to delete. Metas written before it was kept (bytes 1 and 2, no
// oldest revision) decode with it unknown (0).
//
// A read at revision r sees, for each key, its newest version at or below
// r; a key whose newest such version is a tombstone, or which has none,
// does not exist at r. A read of the latest state reads at
// keys.MaxRevision.

const (
	versionValue     byte = 1
	versionTombstone byte = 2

	metaLive    byte = 3
	metaDeleted byte = 4
)

// KeyValue is one key as a read saw it. The caller owns both slices.
type KeyValue struct {
	Key   []byte
	Value []byte
	// CreateRevision is the revision of the write that created the key,
	// ModRevision the revision of the last write to it, and Version the
	// number of writes to it since its creation.
	CreateRevision uint64
	ModRevision    uint64
	Version        uint64
	// Lease is the lease the key is attached to (0: none).
	Lease uint64
}

// versionMeta is what a version says about its key, besides the value.
type versionMeta struct {
	create, version, lease uint64
}

// appendVersionValue appends the encoding of a value version to dst.
func appendVersionValue(dst []byte, m versionMeta, value []byte) []byte {
	dst = append(dst, versionValue)
	dst = binary.AppendUvarint(dst, m.create)
	dst = binary.AppendUvarint(dst, m.version)
	dst = binary.AppendUvarint(dst, m.lease)
	return append(dst, value...)
}

// keyMeta is a key's current state, as its meta record holds it.
type keyMeta struct {
	live bool
	mod  uint64 // the revision of the newest version (a tombstone's if deleted)
	// oldest is the revision of the oldest stored version (0: unknown).
	oldest uint64
	versionMeta
}

// appendKeyMeta appends the encoding of m to dst.
func appendKeyMeta(dst []byte, m keyMeta) []byte {
	if !m.live {
		dst = binary.AppendUvarint(append(dst, metaDeleted), m.mod)
		return binary.AppendUvarint(dst, m.oldest)
	}
	dst = binary.AppendUvarint(append(dst, metaLive), m.mod)
	dst = binary.AppendUvarint(dst, m.oldest)
	dst = binary.AppendUvarint(dst, m.create)
	dst = binary.AppendUvarint(dst, m.version)
	return binary.AppendUvarint(dst, m.lease)
}

// decodeKeyMeta decodes a meta record.
func decodeKeyMeta(v []byte) (keyMeta, error) {
	if len(v) == 0 || v[0] < versionValue || v[0] > metaDeleted {
		return keyMeta{}, errBadVersion
	}
	d := decoder{buf: v[1:]}
	m := keyMeta{live: v[0] == versionValue || v[0] == metaLive, mod: d.uvarint()}
	if v[0] >= metaLive {
		m.oldest = d.uvarint()
	}
	if m.live {
		m.create, m.version, m.lease = d.uvarint(), d.uvarint(), d.uvarint()
	}
	if err := d.finish(); err != nil || m.mod == 0 || m.live && (m.create == 0 || m.version == 0) {
		return keyMeta{}, errBadVersion
	}
	return m, nil
}

// tombstoneVersion is the encoding of a tombstone.
var tombstoneVersion = []byte{versionTombstone}

// errBadVersion: a stored version does not decode.
var errBadVersion = errors.New("shard: malformed version")

// decodeVersion decodes a stored version: live is false for a tombstone;
// for a value, m and the value (aliasing v) are set.
func decodeVersion(v []byte) (live bool, m versionMeta, value []byte, err error) {
	if len(v) == 0 {
		return false, m, nil, errBadVersion
	}
	switch v[0] {
	case versionTombstone:
		if len(v) != 1 {
			return false, m, nil, errBadVersion
		}
		return false, m, nil, nil
	case versionValue:
		d := decoder{buf: v[1:]}
		m.create, m.version, m.lease = d.uvarint(), d.uvarint(), d.uvarint()
		if d.err != nil || m.create == 0 || m.version == 0 {
			return false, m, nil, errBadVersion
		}
		return true, m, d.buf, nil
	}
	return false, m, nil, errBadVersion
}

// readVersion reads key's newest version at or below rev through it (an
// iterator over the whole key space or the key's span). found is false if
// the key has no version at or below rev or its newest one is a
// tombstone. The returned value aliases the iterator's buffers. A read
// error, a malformed version included, is returned as err.
func readVersion(it *pebble.Iterator, seek []byte, key []byte, rev uint64) (kv KeyValue, found bool, seekKey []byte, err error) {
	seek = keys.AppendMVCCKey(seek[:0], key, rev)
	if !it.SeekPrefixGE(seek) {
		return KeyValue{}, false, seek, it.Error()
	}
	k, at, ok := keys.DecodeMVCCKey(it.Key())
	if !ok || !bytes.Equal(k, key) {
		return KeyValue{}, false, seek, nil
	}
	v, err := it.ValueAndErr()
	if err != nil {
		return KeyValue{}, false, seek, err
	}
	live, m, value, err := decodeVersion(v)
	if err != nil {
		return KeyValue{}, false, seek, fmt.Errorf("%w: %s", err, keys.FormatKey(it.Key()))
	}
	if !live {
		return KeyValue{}, false, seek, nil
	}
	return KeyValue{Key: k, Value: value, CreateRevision: m.create, ModRevision: at, Version: m.version, Lease: m.lease}, true, seek, nil
}

// ReadAt reads key's newest version at or below rev from r (a node's
// Pebble, or a snapshot or batch of it); found is false if key does not
// exist at rev. The caller owns the result. It reads Pebble directly,
// behind no read barrier: the simulator and tests use it to look at a
// replica's data.
func ReadAt(r pebble.Reader, key []byte, rev uint64) (kv KeyValue, found bool, err error) {
	return getAt(r, key, rev)
}

// getAt reads key's newest version at or below rev from r, copying what
// it returns: a PointReader of one read.
func getAt(r pebble.Reader, key []byte, rev uint64) (KeyValue, bool, error) {
	var pr PointReader
	kv, found, err := pr.get(r, key, rev)
	if cerr := pr.Close(); err == nil {
		err = cerr
	}
	return kv, found && err == nil, err
}

// clone copies kv's key and value into one new buffer (one allocation
// instead of two, on every read's path), the key's capacity cut at its
// length so that appending to it never reaches the value. The value is
// never nil: a key stored with an empty value has an empty one.
func (kv KeyValue) clone() KeyValue {
	buf := make([]byte, len(kv.Key)+len(kv.Value))
	n := copy(buf, kv.Key)
	copy(buf[n:], kv.Value)
	kv.Key, kv.Value = buf[:n:n], buf[n:]
	return kv
}

// cloneKey is clone without the value, for a keys-only read: the value is
// left nil and its bytes are not copied.
func (kv KeyValue) cloneKey() KeyValue {
	kv.Key = bytes.Clone(kv.Key)
	kv.Value = nil
	return kv
}

// countAt counts the keys of [start, end) (empty end: +inf) that exist at
// rev in r, as scanAt sees them, copying no key or value, and tallies
// those attached to a lease by lease. It counts at most limit keys (limit
// <= 0: all); when the limit stops it before end, more is set and last is
// the last key counted (the caller owns it).
func countAt(r pebble.Reader, start, end []byte, limit int, rev uint64) (c KeyCount, err error) {
	err = scanAt(r, start, end, rev, func(kv KeyValue) bool {
		if limit > 0 && c.Keys == int64(limit) {
			c.More = true
			return false
		}
		c.Keys++
		if kv.Lease != 0 {
			if c.Leased == nil {
				c.Leased = make(map[uint64]int64)
			}
			c.Leased[kv.Lease]++
		}
		c.Last = append(c.Last[:0], kv.Key...)
		return true
	})
	if err != nil || !c.More {
		c.Last = nil
	}
	return c, err
}

// scanAt calls fn for each key of [start, end) (empty end: +inf) that
// exists at rev, in key order, with its newest version at or below rev,
// until fn returns false. The KeyValue passed to fn aliases the iterator's
// buffers: fn copies what it keeps.
func scanAt(r pebble.Reader, start, end []byte, rev uint64, fn func(kv KeyValue) bool) error {
	lo, hi := keys.UserSpan(start, end)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	err = scanVersions(it, rev, fn)
	if cerr := it.Close(); err == nil {
		err = cerr
	}
	return err
}

// skipNexts is how many versions scanVersions steps over with Next before
// it seeks to a key's next user key: a few Nexts are cheaper than a seek
// when a key has few versions, a seek is cheaper when it has many.
const skipNexts = 4

// scanVersions is scanAt over an open iterator.
func scanVersions(it *pebble.Iterator, rev uint64, fn func(kv KeyValue) bool) error {
	var seek, cur []byte
	valid := it.First()
	for valid {
		k, at, ok := keys.DecodeMVCCKey(it.Key())
		if !ok {
			if _, meta := keys.MVCCMeta(it.Key()); meta {
				valid = it.Next() // a key's meta, just before its versions
				continue
			}
			return fmt.Errorf("%w: key %x among the user data", errBadVersion, it.Key())
		}
		// k aliases the iterator's buffer, which moving it reuses.
		cur = append(cur[:0], k...)
		if at > rev {
			// Newer than the read: find this key's newest version at or
			// below rev, if it has one.
			seek = keys.AppendMVCCKey(seek[:0], cur, rev)
			if valid = it.SeekGE(seek); !valid {
				break
			}
			if k, at, _ = keys.DecodeMVCCKey(it.Key()); !bytes.Equal(k, cur) {
				continue // none: it is at the next key
			}
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		live, m, value, err := decodeVersion(v)
		if err != nil {
			return fmt.Errorf("%w: %s", err, keys.FormatKey(it.Key()))
		}
		if live && !fn(KeyValue{Key: cur, Value: value, CreateRevision: m.create, ModRevision: at, Version: m.version, Lease: m.lease}) {
			return nil
		}
		// Skip cur's older versions: a few steps, then a seek to the
		// smallest user key above cur.
		valid = it.Next()
		for n := 0; valid; n++ {
			if k, _, _ := keys.DecodeMVCCKey(it.Key()); !bytes.Equal(k, cur) {
				break
			}
			if n == skipNexts {
				seek = keys.AppendMVCCPrefix(seek[:0], append(cur, 0))
				valid = it.SeekGE(seek)
				break
			}
			valid = it.Next()
		}
	}
	return it.Error()
}
