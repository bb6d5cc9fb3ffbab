package bench

import (
	"math"
	"strconv"
	"strings"
	"testing"
)

func TestStagesFromMetrics(t *testing.T) {
	page := func(commitSum, commitCount, putSum, putCount, syncs, entries float64) string {
		return strings.Join([]string{
			"# HELP flotilla_engine_commit_latency_seconds from a proposal to its commit",
			"# TYPE flotilla_engine_commit_latency_seconds histogram",
			`flotilla_engine_commit_latency_seconds_bucket{le="0.001"} 3`,
			"flotilla_engine_commit_latency_seconds_sum " + f(commitSum),
			"flotilla_engine_commit_latency_seconds_count " + f(commitCount),
			"flotilla_engine_apply_latency_seconds_sum 0",
			"flotilla_engine_apply_latency_seconds_count 0",
			`flotilla_rpc_server_duration_seconds_sum{method="Put",otel_scope_name="x",service="flotilla.v1.KV"} ` + f(putSum),
			`flotilla_rpc_server_duration_seconds_count{method="Put",otel_scope_name="x",service="flotilla.v1.KV"} ` + f(putCount),
			`flotilla_rpc_server_duration_seconds_count{method="Heartbeat",service="flotilla.v1.Placement"} 99`,
			`flotilla_engine_syncs_total{otel_scope_name="x"} ` + f(syncs),
			`flotilla_engine_sync_entries_total{otel_scope_name="x"} ` + f(entries),
			"flotilla_engine_groups 16",
			`flotilla_engine_read_batches_total{otel_scope_name="x"} ` + f(syncs/2),
			`flotilla_transport_batches_total{otel_scope_name="x"} ` + f(entries*2),
		}, "\n")
	}
	before, err := parseStageMetrics(strings.NewReader(page(1, 1000, 2, 1000, 100, 150)))
	if err != nil {
		t.Fatal(err)
	}
	after, err := parseStageMetrics(strings.NewReader(page(1.5, 1500, 2.8, 1400, 300, 750)))
	if err != nil {
		t.Fatal(err)
	}
	s := stagesBetween(before, after)
	near := func(what string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 1e-9 {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	near("commit mean ms", s.Commit.MeanMs, 1) // 0.5 s over 500
	if s.Commit.Count != 500 {
		t.Errorf("commit count %d, want 500", s.Commit.Count)
	}
	near("Put mean ms", s.Requests["Put"].MeanMs, 2) // 0.8 s over 400
	near("entries per sync", s.EntriesPerSync, 3)    // 600 over 200
	if s.ReadBatches != 100 || s.Batches != 1200 {
		t.Errorf("ReadIndex rounds %d, raft batches %d; want 100 and 1200", s.ReadBatches, s.Batches)
	}
	if _, ok := s.Requests["Heartbeat"]; ok {
		t.Error("a Placement method was counted as a KV request")
	}
	if s.Apply.Count != 0 || s.Apply.MeanMs != 0 {
		t.Errorf("apply with no observations: %+v", s.Apply)
	}
	if got := s.String(); !strings.Contains(got, "KV.Put 2.000 ms (400)") || !strings.Contains(got, "commit 1.000 ms (500)") || !strings.Contains(got, "ReadIndex rounds 100, raft batches sent 1200") {
		t.Errorf("String() = %q", got)
	}
	reads := &ServerStages{Requests: map[string]StageMean{"Get": {Count: 10, MeanMs: 0.5}}}
	if got := reads.String(); got != "KV.Get 0.500 ms (10)" {
		t.Errorf("stages of a read-only window: %q", got)
	}
	if _, err := parseStageMetrics(strings.NewReader("flotilla_engine_syncs_total not-a-number\n")); err == nil {
		t.Error("a malformed value was accepted")
	}
}

func f(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

func TestMedianRecordKeepsStagesOfMedianRun(t *testing.T) {
	recs := []Record{
		{OpsPerSec: 300, ServerStages: &ServerStages{Commit: StageMean{MeanMs: 3}}},
		{OpsPerSec: 100, ServerStages: &ServerStages{Commit: StageMean{MeanMs: 1}}},
		{OpsPerSec: 200, ServerStages: &ServerStages{Commit: StageMean{MeanMs: 2}}},
	}
	if m := MedianRecord(recs); m.ServerStages == nil || m.ServerStages.Commit.MeanMs != 2 {
		t.Fatalf("median record's stages: %+v", m.ServerStages)
	}
}
