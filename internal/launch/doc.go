// Package launch starts Flotilla's binaries as child processes on
// loopback: a local fleet of placementd replicas and shardnodes for the
// demo (`flotilla demo`), the bench suite and the tests. It owns the
// processes' command lines, ports (internal/ports), data directories,
// logs, development TLS certificates, readiness waits and stops. It does
// not build binaries (FindBinary finds them; tests build them through
// internal/fleet, its testing.TB adapter) and does not drive the fleet's
// data: callers use the router, the CLI or the gRPC services for that.
//
// Every call that can fail returns an error (nothing here knows
// testing.TB), and every wait takes a context and polls a condition with
// a deadline (internal/poll); nothing sleeps for a fixed time.
//
// # A fleet
//
//	f, err := launch.Start(ctx, launch.Options{
//		Dir: dir, Nodes: 3, PlacementReplicas: 1, Shards: 16, ReplicationFactor: 3,
//	})
//	if err != nil { ... }          // what failed, with the log to read
//	defer f.Close()                // SIGKILL; or f.Stop(15*time.Second): SIGTERM first
//	err = f.WaitLeaders(ctx, 16)   // placement placed the shards, each has a leader
//	r, err := router.New(ctx, router.Config{PlacementAddresses: f.PlacementAddrs()})
//	err = f.Node(2).Kill(ctx)      // SIGKILL one node; Node(2).Restart(ctx) brings it back
//
// New prepares the same fleet without starting it; Add and AddPlacement
// grow a prepared fleet, and Fleet.Start, StartPlacement and StartNodes
// start what is not running. A bare Process runs any other server (the
// bench's etcd members) with the same log and signal handling, and
// WaitHTTP waits for its health endpoint.
//
// With Options.Etcd every shardnode also serves the etcd v3 API
// (--etcd-listen) on a loopback port of its own, Node.EtcdAddr.
//
// # Layout of Dir
//
// shardnode N keeps its data in nodeN/ and logs to shardnode-N.log; a
// single placement replica uses placement/ and placementd.log, three use
// placement-ID/ and placementd-ID.log; a TLS fleet's CA and certificates
// are in tls/ (ca.crt, client.crt, node-N.crt, placement-ID.crt).
package launch
