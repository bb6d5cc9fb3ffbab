//go:build tools

// Package etcdbenchmark pins etcd's own benchmark tool
// (go.etcd.io/etcd/v3/tools/benchmark), which package bench builds on
// demand into .cache/etcd/ (see bench/etcdbench.go) to drive Flotilla's
// etcd API and etcd with the same client. It is a module of its own so
// that the tool's dependencies never enter Flotilla's module graph. The
// pinned release is the newest of the tool's module the module proxy
// serves; the tool speaks the etcd v3 API of any 3.x server.
package etcdbenchmark

import _ "go.etcd.io/etcd/v3/tools/benchmark"
