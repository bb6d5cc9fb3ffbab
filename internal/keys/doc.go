// Package keys defines how Flotilla lays out every key in a shardnode's one
// Pebble instance.
//
// The key space has two halves, chosen so that a range of user keys is a
// contiguous range of Pebble keys and no local key ever sorts among them:
//
//	0x01 'r' <group:8> <suffix>        raft-local state of one group (multiraft)
//	0x01 's' <shard:8> <suffix>        shard-local state of one shard (shard)
//	0x01 'p' <kind> <id:8>             placement's catalogue (placementd only)
//	0x02 <user key> <^revision:8>      one version of a user key (see mvcc.go)
//
// Pebble orders keys with Compare (Comparer in internal/pebbleopts): the
// local half bytewise, versions by user key and then newest first. Every
// Pebble holding shards' data must be opened with it.
//
// Because user data is keyed by the user key and not by the shard, a split
// moves no data and a shard's snapshot is a scan of one key range.
// Group and shard IDs are big-endian so that all keys of one group are
// adjacent and DeleteRange over a group's prefix removes exactly its state.
//
// Functions here allocate a new slice unless they take a destination buffer;
// they are safe for concurrent use.
package keys
