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
//	go test -run '^$' -bench . -benchtime=1x -count=3 ./multiraft/bench/
//
// (make bench-engine). The engines are ticked by one ticker goroutine every
// TickInterval (100 ms), which with the default ElectionTicks of 10 gives
// an election timeout of 1–2 s, the usual production setting.
//
// TestWorkersSmoke runs three engines with real workers under concurrent
// proposals and reads; run it with -race.
package bench
