// Package pebbleopts holds the options of a Flotilla node's one Pebble store:
// the key order (Comparer, over internal/keys' layout), the block cache,
// the bloom filters every level carries and the shape of the LSM (when L0
// is compacted, how large Lbase grows). BenchmarkNodeWrites measures what
// the shape costs a node's writes. shardnode,
// placementd and the bench's engine workload open their stores with
// Options, so a benchmark measures the store the fleet runs.
//
// It is a leaf: it imports Pebble and internal/keys, and the binaries add
// their own logger (serve.PebbleLogger).
package pebbleopts
