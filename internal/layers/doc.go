// Package layers holds the test that keeps Flotilla's import graph in the
// direction ARCHITECTURE.md draws: cmd → placement, router, rpc → shard →
// multiraft, with leaves below everything and test harnesses beside the
// stack. It has no code of its own; `go test ./internal/layers/` lists
// every package's imports with `go list` and fails on each edge against
// the direction, naming it.
//
// When a package is added, give it a layer in the table of layers_test.go;
// the test fails on a package the table does not know, so the map cannot
// silently fall behind the tree.
package layers
