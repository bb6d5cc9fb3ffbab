// Package bench is Flotilla's bench suite: workloads, drivers for Flotilla
// (through package router) and etcd (through go.etcd.io/etcd/client/v3),
// local fleets of both, HDR latency histograms, CPU readings from /proc,
// reports, JSON and plots. `flotilla-bench` (cmd/flotilla-bench, which
// `flotilla bench` runs) is its command line; bench/README.md explains
// every workload, flag and figure.
//
// It owns the measurement, not the systems: it starts the real binaries
// (shardnode, placementd, and an etcd server built from a pinned release
// in the tools module bench/etcdtool) as child processes on loopback with
// the launcher the demo and the tests use (internal/launch), and drives
// them only through their public clients.
//
// # A comparison
//
//	rep, err := bench.Compare(ctx, bench.CompareOptions{
//		Workloads: []bench.Config{{Workload: "write", Clients: 100, ValueSizeBytes: 256, Duration: 30 * time.Second}},
//		Runs:      3,
//	})
//	rep.WriteTable(os.Stdout)
//	rep.WriteJSON("out.json")
//	rep.WritePlots("plots/")
//
// CompareOptions.Endpoints drives an already running fleet instead of
// starting one. A median record carries the spread of its runs, and every
// record the bench's own build (version, commit, Go).
//
// Compare probes the disk's fsync latency (ProbeFsync) in the data
// directory, then for every workload, run and system, in turn: starts a
// fresh fleet (a launch.Fleet whose shards all have leaders, or
// StartEtcd), connects a Driver, and calls Run, which
//
//  1. preloads every key once (workloads that read or scan),
//  2. runs the warm-up (not counted),
//  3. opens the measured window: reads every server process's CPU time
//     from /proc/PID/stat, runs the clients until Duration passes or Ops
//     operations succeeded, samples the completions of every second, and
//     reads the CPU times again,
//
// then kills the fleet. Each client records latencies into its own HDR
// histogram (github.com/HdrHistogram/hdrhistogram-go, 1 µs to 10 min, 3
// significant digits), merged at the end, so the hot path takes no lock.
// An operation counts in the window only if it started and ended in it;
// in an open loop (Config.Rate) its latency runs from its scheduled start.
//
// # Keys
//
// Key(i) is an 8-byte bijective hash of i followed by i's digits: keys
// are unique, and their first byte is uniform over [0, 256), so every
// shard of a key space split on first bytes gets its share. Zipfian
// popularity (Zipf, Gray et al.'s method as YCSB uses it) picks ranks,
// and ranks go through the same hash, so hot keys scatter over shards.
//
// # The watch workload
//
// Config.Workload "watch" runs the write workload with Config.Watchers
// range watches beside it, through the Driver's optional Watcher
// capability (ErrWatchUnsupported without it). Every value is stamped
// with its send time and identity; each watcher measures the event lag
// (delivery minus send time, one process, one clock) into its own
// histogram and lists the identities it saw, without a lock. After the
// window a marker write per watcher bounds the drain, and the lists are
// merged against the writes acknowledged in the window: Result.Watch
// counts the missing and duplicate events (watch.go explains why the
// marker proves the drain complete).
//
// # etcd's side
//
// EtcdDriver sends etcd's requests to the member that leads
// (EtcdTargetLeader: found with the maintenance Status API and followed
// when it changes), as the router sends Flotilla's to shard leaders, or
// balances them over every member (EtcdTargetAll); CompareOptions's
// EtcdTarget picks, by default the leader for workloads that write.
// CheckEtcdDriver runs etcd's own benchmark tool and the driver in turn
// on one etcd, so that a comparison can show it does not short-change
// etcd.
//
// # Transactions
//
// The workloads batch, txn, transfer-1shard and transfer-2shard (txn.go)
// write two keys per operation through the optional TxnKV capability of
// a driver's KVs: an atomic batch, a transaction of puts, or a transfer
// (read both, write both, commit if unchanged) on one shard or two. Keys
// are paired by the shards the Flotilla fleet lists (RunOptions's
// ShardBoundaries), and for etcd by as many even ranges.
//
// # The curve
//
// RunCurve runs Compare at several client counts and gathers the medians
// into a Curve: a markdown table, PNG plots of throughput and CPU per
// operation by concurrency, and JSON.
//
// # Other benchmarks
//
// RunEngine measures the multiraft engine in process (single-replica
// groups, fsync on: group commit). RunIdle measures a fleet holding
// thousands of idle shards created through the Admin service. RunFailover
// kills the node leading most shards under a steady write load and
// measures each shard's unavailability.
//
// # Concurrency
//
// Run, Compare, RunEngine, RunIdle and RunFailover may be called from any
// goroutine; they start and stop their own. A Driver and its KVs are safe
// for concurrent use. Results are owned by the caller.
//
// # Dependencies
//
// github.com/HdrHistogram/hdrhistogram-go (histograms),
// go.etcd.io/etcd/client/v3 (the etcd driver), gonum.org/v1/plot (PNG
// plots, no cgo), golang.org/x/term (in cmd/flotilla-bench, to draw progress
// only on terminals).
package bench
