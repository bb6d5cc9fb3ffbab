// Package sim is Flotilla's deterministic simulator: it runs several real
// multiraft Engines with the real shard state machine in one process,
// injects faults from a seed, and checks what clients observed.
//
// # What it simulates
//
//   - Nodes (default 3). Each is a multiraft.Engine opened with Workers: -1
//     (manual mode: nothing runs unless the simulator calls Process) over its
//     own Pebble on vfs.NewCrashableMem(). A crash takes the filesystem's
//     crash image (CrashClone: only synced writes survive) before the engine
//     and Pebble close, and the node later restarts from that image.
//   - Groups (default 32), each with a replica on every node, each owning a
//     few keys ("g00007/k0" ...). The state machine is the shard package
//     (Backend "shard", the default) or the simulator's own small kvSM
//     (Backend "kv", kv.go), kept so the simulator can run without shard
//     and so planted bugs can be tested (bugs.go).
//   - A network (network.go) implementing multiraft.Transport: per-message
//     loss, duplication and delay (which reorders), partitions (a node
//     isolated, one direction of a link cut, or with five or more nodes a
//     split), and snapshot transfers delayed, failed or cut mid-stream (the
//     truncated body is delivered and must be refused). NodeDown is called
//     on every node that loses sight of a crashed or partitioned node.
//   - Leadership transfers, and reconfigurations (reconfig.go) that replace
//     a voter by a fresh replica on the same node: remove, garbage-collect
//     the leftover, JoinGroup, add as learner (it catches up by snapshot),
//     promote, all under the faults.
//   - Clients (client.go, default 12), one request at a time each: put,
//     delete, CAS, batch, and linearizable, lease and stale reads, sent to
//     the node believed to lead (following NotLeader hints, retrying
//     elsewhere while a request surely has not applied). With the shard
//     backend every write carries a client ID and sequence number, so a
//     write whose outcome is ambiguous is retried and must apply at most
//     once; with kvSM it is recorded as ambiguous and never retried. A
//     read follows shard.Store.Get: wait for the engine's read barrier,
//     read Pebble, then check the replica still exists (it may have applied
//     its own removal and deleted its data meanwhile).
//
// Virtual time is the step. Each step: faults, restarts, a Tick of every
// live engine every stepsPerTick steps, delivery of the messages due, one
// Process of every live engine, then the clients. History timestamps come
// from a counter bumped at every call and return, so they order events
// exactly as they happened.
//
// # What it checks
//
//   - Linearizability of every linearizable and lease read and every write,
//     per key, with porcupine (checker.go). An ambiguous write may or may
//     not have happened: it has no output and never returns. Surely failed
//     requests are left out. The run ends by healing every fault, letting
//     the cluster converge, and reading every key linearizably; those final
//     reads join the history.
//   - Lost writes, separately: an acknowledged write is lost when the final
//     value of its key was written by a write that returned before it was
//     called (values are unique, so the writer is known).
//   - At most one leader per group and term, from every message only a
//     leader sends (MsgApp, MsgHeartbeat, MsgSnap, MsgTimeoutNow) and from
//     periodic status samples.
//   - Replicas of a group at the same applied index hold the same data
//     (user keys and, with shard, the descriptor and client table), at every
//     sample and after convergence.
//   - Stale reads return a value some write could have written; a truncated
//     snapshot is refused; the healed cluster converges; a node recovers
//     from its crash image; no engine or state machine panics (a panic ends
//     the run as a violation, with its stack).
//
// # Determinism
//
// A run is a function of its Config. Every decision of the simulator comes
// from one math/rand/v2 PCG seeded with Config.Seed; nothing iterates a Go
// map where order matters; the engines run in manual mode on the
// simulator's goroutine. Raft draws its randomized election timeouts from
// crypto/rand, so the caller seeds it too (cryptotest.SetGlobalRandom with
// the same seed; see runSeed in sim_test.go). Pebble flushes memtables on
// goroutines of its own, and a flush makes unsynced writes durable, so a
// crash first waits for any flush in progress. TestDeterminism runs seeds
// twice and requires identical traces, histories and counters.
//
// # Running and replaying
//
//	make sim SEEDS=200                 # seeds 1..200; ends "sim: seeds=N violations=V lost=L"
//	go test ./internal/sim -run '^TestSimulation$' -seeds=1000 -seed-base=5000
//	go test ./internal/sim -run '^TestSimulation$' -seed=1234 -v       # replay one seed
//	go test ./internal/sim -run '^TestSimulation$' -seed=1234 -v -simtrace -trace-group=7
//
// A failing seed prints the command that replays it. (go test prints a
// passing package's output only with -v, so the summary line of a passing
// run shows only with -v.) Flags: -seeds,
// -seed-base, -seed, -steps, -groups, -nodes, -clients, -backend,
// -no-faults, -progress (a line per seed with -v), -simtrace (print the trace as it happens), -trace-group
// (add every message of one group to it).
//
// # Engine bugs found
//
// The first three have deterministic reproductions in enginebug_test.go,
// kept as regression tests now that they are fixed.
//
//  1. Misaddressed messages (TestEngineDropsMisaddressedMessage). The
//     engine handed a message to its replica of the group without checking
//     Msg.To; after a reconfiguration, a heartbeat in flight to the
//     replaced replica reached the new, empty one and raft panicked.
//  2. Close left queued operations (StatusFuture, ChangeReplicas,
//     RemoveGroup, ...) unresolved (TestEngineCloseResolvesQueuedOps); a
//     reconfiguration waited forever on a node that had crashed.
//  3. Stale lease reads after a follower restart
//     (TestEngineLeaseReadAfterFollowerRestart). A lease relies on no
//     follower voting for another candidate within an election timeout of
//     hearing from the leader, but a restarted follower had forgotten its
//     leader and voted at once; a leader cut off right then kept serving
//     lease reads while another replica committed writes.
//  4. Open, liveness only: elections in a healed cluster. A follower can
//     be left ticking while its leader is quiesced: it restarted, its
//     Quiesce heartbeat was lost or overtaken by an older heartbeat, or it
//     learned the leader from the very batch that carried the Quiesce
//     marker (round.prepare compares the sender with the leader published
//     before that batch). It then campaigns, and two such followers depose
//     a healthy leader. TestSimulation reports how many groups elected a
//     leader after every fault had healed ("unstable"); the final reads
//     retry, as a client would.
//
// # Not covered
//
// Splits, joint (multi-replica) membership changes, clock skew between
// nodes (every live node ticks at the same step), disk errors other than
// lost unsynced writes, and cross-key atomicity of batches (each key is
// checked on its own; replicas are compared whole).
package sim
