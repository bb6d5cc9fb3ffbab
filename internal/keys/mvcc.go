package keys

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
)

// Versioned user data
//
// Every version of a user key is one Pebble key: the user prefix, the user
// key, a zero byte, the version's revision inverted as 8 big-endian bytes,
// and the length of that suffix (9):
//
//	0x02 <user key> 0x00 <^revision:8> 0x09
//
// Pebble orders these keys with Compare, not bytewise: first by the prefix
// 0x02 <user key> 0x00 (bytewise, which orders user keys bytewise), then
// by the suffix, so the versions of one key are adjacent and the newest
// comes first. A read of key k at revision r seeks to (k, r) and finds the
// newest version at or below r; a split still moves nothing, since the
// key carries no shard. Split (the Pebble Comparer's) cuts the suffix off,
// so Pebble's bloom filters are built over user keys and a point lookup of
// any version skips tables that hold no version of the key.
//
// The last byte says where the prefix ends, as in CockroachDB's engine
// keys: 9 for a version, 0 for a key with no suffix. A prefix itself ends
// in the zero byte, so it is a key of its own that sorts before every
// version of its user key, and the prefix with one more zero byte (Pebble's
// ImmediateSuccessor) sorts after all of them and before every later user
// key. Keys of the local half (0x01) and the end of the user half (0x03)
// have no suffix and compare bytewise, so the local half's layout and
// order are exactly what they were before versions.

// suffixLen is the length of a version's suffix after its prefix: the
// revision and the length byte.
const suffixLen = 9

// MaxRevision is the largest revision: MVCCKey(k, MaxRevision) is the
// first version of k in Pebble's order.
const MaxRevision = math.MaxUint64

// MVCCKey returns the Pebble key of the version of user key k at revision
// rev.
func MVCCKey(k []byte, rev uint64) []byte {
	return AppendMVCCKey(make([]byte, 0, 2+len(k)+suffixLen), k, rev)
}

// AppendMVCCKey appends the Pebble key of the version of user key k at
// revision rev to dst.
func AppendMVCCKey(dst, k []byte, rev uint64) []byte {
	dst = AppendMVCCPrefix(dst, k)
	dst = binary.BigEndian.AppendUint64(dst, ^rev)
	return append(dst, suffixLen)
}

// AppendMVCCPrefix appends the prefix every version of user key k shares
// to dst. As a key, it sorts before all of them.
func AppendMVCCPrefix(dst, k []byte) []byte {
	return append(append(append(dst, userPrefix), k...), 0)
}

// DecodeMVCCKey returns the user key and revision of the Pebble key ek of
// a version; ok is false if ek is not one. The user key aliases ek.
func DecodeMVCCKey(ek []byte) (k []byte, rev uint64, ok bool) {
	n := len(ek) - suffixLen
	if n < 2 || ek[0] != userPrefix || ek[len(ek)-1] != suffixLen || ek[n-1] != 0 {
		return nil, 0, false
	}
	return ek[1 : n-1], ^binary.BigEndian.Uint64(ek[n:]), true
}

// MVCCMeta returns the user key of the Pebble key ek if it is a bare
// prefix (see AppendMVCCPrefix): the key under which the shard package
// keeps a user key's current state, just before its versions. It aliases
// ek.
func MVCCMeta(ek []byte) (k []byte, ok bool) {
	if len(ek) < 2 || ek[0] != userPrefix || ek[len(ek)-1] != 0 {
		return nil, false
	}
	return ek[1 : len(ek)-1], true
}

// MVCCPrefix returns the part of Pebble key ek shared by every version of
// its user key (all of ek if it is not a version). It aliases ek.
func MVCCPrefix(ek []byte) []byte { return ek[:Split(ek)] }

// IsUserKey reports whether the Pebble key k holds user data.
func IsUserKey(k []byte) bool { return len(k) > 0 && k[0] == userPrefix }

// UserSpan returns the Pebble bounds [lo, hi) of every version of every
// user key in [start, end); an empty end means +inf.
func UserSpan(start, end []byte) (lo, hi []byte) {
	lo = AppendMVCCPrefix(nil, start)
	if len(end) == 0 {
		return lo, []byte{userPrefixEnd}
	}
	return lo, AppendMVCCPrefix(nil, end)
}

// Split returns the length of the prefix of Pebble key k that its versions
// share: all of k but the suffix for a version, all of k otherwise. It is
// the Pebble Comparer's Split.
func Split(k []byte) int {
	if n := len(k) - suffixLen; n >= 2 && k[0] == userPrefix && k[len(k)-1] == suffixLen && k[n-1] == 0 {
		return n
	}
	return len(k)
}

// ImmediateSuccessor appends to dst the smallest key above every key with
// prefix p (a key Split leaves whole): p and a zero byte. It is the Pebble
// Comparer's ImmediateSuccessor.
func ImmediateSuccessor(dst, p []byte) []byte {
	return append(append(dst, p...), 0)
}

// Compare orders Pebble keys: by prefix (see Split) bytewise, then by
// suffix bytewise, which puts a key without a suffix first and the
// versions of one user key newest first. It is the Pebble Comparer's
// Compare; on keys without a suffix it is bytes.Compare.
func Compare(a, b []byte) int {
	sa, sb := Split(a), Split(b)
	if c := bytes.Compare(a[:sa], b[:sb]); c != 0 {
		return c
	}
	return bytes.Compare(a[sa:], b[sb:])
}

// FormatKey renders a Pebble key for Pebble's logs and tools: a version as
// its quoted user key and revision, anything else in hex.
func FormatKey(k []byte) fmt.Formatter {
	return formattedKey(k)
}

type formattedKey []byte

func (k formattedKey) Format(s fmt.State, _ rune) {
	if uk, rev, ok := DecodeMVCCKey(k); ok {
		fmt.Fprintf(s, "%q@%d", uk, rev)
		return
	}
	fmt.Fprintf(s, "%x", []byte(k))
}
