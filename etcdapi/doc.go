// Package etcdapi serves the etcd v3 gRPC API (the etcdserverpb services,
// same package and service names, so unmodified etcd clients connect) over
// a router.Client, so that etcdctl, clientv3, etcd's benchmark tool and the
// Kubernetes API server's etcd3 storage work against a Flotilla fleet. A
// shardnode serves it on --etcd-listen through its own router; an
// application can embed it: New(Config{Router: r, ...}).Register(grpcServer).
//
// # Revisions
//
// etcd revisions are Flotilla revisions: the oracle timestamps every write
// carries. They order writes in real time across shards, as etcd's single
// counter does, but they are sparse: a write's revision is not its
// predecessor's plus one, and nothing is written at most revisions. Clients
// that only compare revisions, read at them and watch from them (clientv3,
// Kubernetes) are unaffected; arithmetic on them ("the next write will be
// at R+1") does not hold.
//
// A read of the latest state (Range without a revision, not serializable)
// reads at the revision Config.Now answers from the oracle after the
// request arrived (on a shardnode the last write's, shard.Store.LastWrite,
// as etcd's current revision; otherwise a fresh one), at which every
// shard of the range is read once it resolved it: the answer is one snapshot across shards that sees every
// write acknowledged before the request, and its header revision is at
// least the revision of any such write. A shard's own resolved revision,
// what the router's single-shard latest reads answer at, is only as new as
// that shard's last write; a client that wrote on another shard and then
// reads with "not older than" that write's revision (Kubernetes does) must
// not be told an older revision. The cost is an oracle call shared with
// the node's writes, and a Resolve entry on a shard that has not written
// since that revision (shared by the reads waiting on the same shard).
// Serializable reads skip both and read any replica's latest state.
//
// A shard's data at a revision its replica resolved past is final, on
// every replica alike, so a read at the fresh revision need not go to the
// leaders: where Config.LocalResolved says this node's own replicas of
// the range resolved past it (a shardnode asks its store), the read goes
// to them (router.Stale, local replica first) and costs no round trip to
// another node; otherwise it goes to the leaders, which resolve first if
// needed. Either way the answer is the same. A read at a revision the
// client gives goes to the leaders: it may be below a compaction that was
// acknowledged before the read but that a local replica has not applied
// yet, and must be refused as etcd refuses it.
//
// # Writes and transactions
//
// Put is a router put (a one-key transaction when it returns the previous
// version or keeps the value or lease). Txn is router.Transact: a
// compare-then-else transaction, on one shard in one Raft command at one
// revision, exactly once; across shards a transaction across shards
// (router/txncross.go: atomic at one revision, compares locked until the
// commit; a ranged compare or delete sees its range at the start; a put
// with a lease is refused with Unimplemented). Compares that need no read
// (on the reserved span, or against a negative number) are decided here.
// DeleteRange of a range deletes shard by shard, each part atomic at its
// own revision.
//
// # Watch
//
// Each watcher of a stream follows one router.Watch of its range (every
// event exactly once, in revision order, across shards, splits and leader
// changes); see watch.go for progress requests and notifications.
//
// # Performance
//
// Figures of etcd's benchmark tool against this API and against etcd,
// run by `flotilla-bench etcd-tool --runs 3 --total 20000 --workloads
// put,range-linearizable,range-serializable,txn-put` (medians of 3, one
// invocation each, the day reads at a revision began to go to the node's
// own replicas: before that change, then after it, 25 minutes apart). The
// 2-core machine ran other tests throughout (load average 20 to 30), so
// single runs swung by up to 3x; only the ratios to etcd of one
// invocation are worth comparing, and even they are rough.
//
//	workload             before: req/s, ratio   after: req/s, ratio
//	put                  952, 0.35x             1,037, 0.32x
//	range, linearizable  4,669, 0.58x           6,412, 0.80x
//	range, serializable  5,935, 0.50x           7,481, 1.07x
//	txn-put              1,072, 0.36x           1,317, 0.56x
//
// Only linearizable reads changed (serializable reads and writes take
// the same path as before; their ratios moved with the noise). A CPU
// profile of a node under linearizable reads showed, before, the read
// crossing to the leader of the key's shard for two nodes out of three
// (router Multi calls to another node); after, the read is served by the
// node's own replica, where a Pebble snapshot per read (taken, read for
// the compaction point and closed, 16% of the node's CPU) is a large
// part of what is left, in the shard package.
//
// The nodes used 10 to 20% of a core, which was read then as requests
// bound by their hops and waits. A later trace of puts says otherwise:
// goroutine dumps of the three nodes every quarter second under the tool
// found few of the tool's 100 requests inside a node's handlers (in the
// 27 dumps of one run mostly 0 or 1, at most 11; a single dump of an
// earlier run caught 40), and the sockets' queues held a few requests at
// most; the rest were waiting for a core in one process or
// another, on 2 cores at a load average of 20 to 28. 10 to 20% of a core
// was each node's share of a machine busy with other work, and the
// throughput follows what a request costs the servers. The tool's table
// now gives each system's server CPU per request; in one invocation
// (same command, the machine's other work using 62 to 74% of its CPU),
// the two ratios came close but for linearizable reads:
//
//	workload             req/s ratio   server CPU per request (F / e)
//	put                  0.54x         626 / 304 us, 0.49x
//	range, linearizable  1.19x         130 / 98 us,  0.75x
//	range, serializable  0.76x         85 / 61 us,   0.72x
//	txn-put              0.41x         674 / 264 us, 0.39x
//
// A CPU profile of the three nodes under puts puts this package and the
// router's path up to its coalescer at about 2% of a node's CPU; Raft
// rounds take a quarter (their apply 16%, of which 7% reads the key's
// latest version before writing it), gRPC's transports and their system
// calls most of the rest; placementd used about 55 us per put. Changes
// that shorten waits without saving CPU measured no gain under this load
// (runs of 10,000 puts by the tool, 100 clients, a fresh fleet each,
// builds alternating, 3 runs each): two
// oracle calls in flight per node instead of one (1,050 against 1,065
// req/s, medians), a pool of 256 stream workers for this API's gRPC
// server (1,044 against 1,010), and no coalescing in the node's router (2
// runs: 656 and 694 against 1,192 and 776). Batches are what keep a
// put's CPU down: at 10 clients a put cost the fleet 2.1 ms of CPU, at
// 100 about 0.6. What would close the gap for writes is CPU per put in
// the shards' write path (the apply's read, the Pebble batches of a
// round) and in the second gRPC exchange of the two writes in three
// whose leader is not the node the client reached.
//
// # Errors
//
// Errors are etcd's own statuses (rpctypes: ErrCompacted, ErrFutureRev,
// ErrLeaseNotFound, ErrEmptyKey, ErrDuplicateKey, ...), which clientv3
// recognises by their messages; the router's other errors pass with their
// gRPC codes. RPCs the fleet does not serve (Auth, membership changes,
// Defragment, Snapshot, Hash, MoveLeader, Downgrade) answer Unimplemented
// naming the RPC.
package etcdapi
