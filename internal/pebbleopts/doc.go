// Package pebbleopts holds the options of a Flotilla node's one Pebble store:
// the key order (Comparer, over internal/keys' layout), the block cache,
// the bloom filters every level carries, the size of Lbase and that of the
// tables' data blocks. shardnode, placementd and the bench's engine
// workload open their stores with Options, so a benchmark measures the
// store the fleet runs; BenchmarkNodeWrites measures what these options, and those tried and
// left, cost a node's writes, and BenchmarkPointReads its reads.
//
// It is a leaf: it imports Pebble and internal/keys, and the binaries add
// their own logger (serve.PebbleLogger).
package pebbleopts
