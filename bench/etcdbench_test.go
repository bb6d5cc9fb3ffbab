package bench

import (
	"bytes"
	"strings"
	"testing"
)

func TestParseEtcdToolReport(t *testing.T) {
	out := []byte(`bench with linearizable range
Summary:
  Total:	2.1356 secs.
  Slowest:	0.3223 secs.
  Fastest:	0.0146 secs.
  Average:	0.1042 secs.
  Stddev:	0.0611 secs.
  Requests/sec:	936.4965

Latency distribution:
  10% in 0.0409 secs.
  99% in 0.2877 secs.
  99.9% in 0.3223 secs.
`)
	r, err := parseEtcdToolReport(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.RequestsSec != 936.4965 || r.AverageMs != 104.2 || r.P99Ms != 287.7 {
		t.Fatalf("parsed %+v", r)
	}
	// Two summaries (watch-latency): the last one counts.
	two := append(bytes.ReplaceAll(out, []byte("936.4965"), []byte("1.0")), out...)
	if r, err := parseEtcdToolReport(two); err != nil || r.RequestsSec != 936.4965 {
		t.Fatalf("two summaries: %+v %v", r, err)
	}
	if _, err := parseEtcdToolReport([]byte("error: connection refused")); err == nil {
		t.Fatal("a report without figures parsed")
	}
}

func TestEtcdToolTable(t *testing.T) {
	r := &EtcdToolResult{ToolVersion: "v3.6.10", EtcdVersion: "v3.6.16", workloads: []string{"put"}, systems: []string{"flotilla", "etcd"}}
	for i, v := range []float64{100, 300, 200} {
		r.Runs = append(r.Runs, EtcdToolRun{System: "flotilla", Workload: "put", Run: i + 1, RequestsSec: v, ServerCPUUsPerReq: 4 * v, OthersCPUShare: 0.5})
		r.Runs = append(r.Runs, EtcdToolRun{System: "etcd", Workload: "put", Run: i + 1, RequestsSec: v / 2, ServerCPUUsPerReq: v, OthersCPUShare: 0.25})
	}
	var b strings.Builder
	r.WriteTable(&b)
	// Medians: Flotilla 200 req/s at 800 us, etcd 100 at 200 us.
	for _, want := range []string{"put       flotilla  200", "800", "50%", "25%", "2.00x", "0.25x"} {
		if !strings.Contains(b.String(), want) {
			t.Fatalf("table lacks %q:\n%s", want, b.String())
		}
	}
}

func TestDriverCheckTable(t *testing.T) {
	dc := &DriverCheck{ToolVersion: "v3.6.10", EtcdVersion: "v3.6.16", Target: EtcdTargetLeader, Clients: 100, Conns: 1,
		Total: 20000, DurationS: 5, Keys: 10000, ValueSize: 256}
	for i, v := range []float64{900, 1100, 1000} {
		dc.Runs = append(dc.Runs, DriverCheckRun{Run: i + 1, ToolFirst: i%2 == 0, ToolReqPerSec: v * 0.9, DriverOpsPerSec: v,
			ToolP99Ms: v / 100, DriverP99Ms: v / 50})
	}
	m := dc.median()
	if m.ToolReqPerSec != 900 || m.DriverOpsPerSec != 1000 || m.DriverP99Ms != 20 {
		t.Fatalf("median: %+v", m)
	}
	var b strings.Builder
	dc.WriteTable(&b)
	out := b.String()
	for _, want := range []string{"requests to leader", "100 clients on 1 connections", "median", "0.90x", "tool", "driver"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}
