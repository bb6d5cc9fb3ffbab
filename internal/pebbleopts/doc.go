// Package pebbleopts holds the options of a Flotilla node's one Pebble store:
// the block cache and the bloom filters every level carries. shardnode,
// placementd and the bench's engine workload open their stores with
// Options, so a benchmark measures the store the fleet runs.
//
// It is a leaf: it imports Pebble and nothing of Flotilla, and the
// binaries add their own logger (serve.PebbleLogger).
package pebbleopts
