// Package bench measures the multiraft engine with real worker goroutines:
// group-commit throughput on a real disk, replication throughput of three
// engines in one process, the idle cost of 10,000 quiesced groups, and the
// time to recover 10,000 groups after a restart.
//
// It owns two small pieces the benchmarks need and nothing else:
//
//   - KV, a state machine whose commands set one key inside the group's own
//     user key range (see internal/keys), with a self-checking snapshot
//     format;
//   - MemNetwork, an in-process Transport: one delivery goroutine per
//     destination node drains a queue, so Send never blocks the engine's
//     workers; snapshots stream through a buffer on a goroutine per
//     transfer.
//
// The benchmarks live in the test files. Each reports its figures with
// b.ReportMetric and hides ns/op, since one iteration is one fixed-length
// measurement:
//
//	go test -run '^$' -bench . -benchtime=1x -count=3 -timeout=30m ./multiraft/bench/
//
// (make bench-engine; benchstat summarises the three runs). Every engine
// runs its own RunTicker with TickInterval (100 ms), which with the
// default ElectionTicks of 10 gives an election timeout of 1–2 s, the
// usual production setting.
//
// The machines these run on are shared, so besides its own figures each
// throughput or idle benchmark reports the CPU this process used
// (cpu-%core) and the CPU every other process of the host used in the same
// window (others-cpu-%core). The throughput benchmarks also report
// cpu-µs/proposal, this process's CPU per committed proposal, which
// depends far less on the neighbours than proposals/s does: with two idle
// cores the throughput ceiling is about 2e6/cpu-µs/proposal.
//
// The engines log through a handler that counts warnings (raft's
// "stepped down" and the like) instead of printing them; the idle
// benchmark reports the count of its election phase (raft-warnings).
//
// TestWorkersSmoke runs three engines with real workers under concurrent
// proposals and reads; run it with -race.
package bench
