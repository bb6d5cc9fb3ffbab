package bench

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/internal/buildinfo"
)

// TestReportJSONShape writes the JSON of three runs of two systems and
// reads it back as any consumer would: every record names the bench's
// version, commit and Go version (and an etcd record etcd's version);
// each system's median record holds the spread of its runs, the smallest
// and largest value of every figure of the table; the text report prints
// the spread under each median.
func TestReportJSONShape(t *testing.T) {
	cfg := Config{Workload: "write", Clients: 4, Duration: time.Second}.withDefaults()
	rep := &Report{Systems: []string{SystemFlotilla, SystemEtcd}, Workloads: []string{"write"}, Configs: map[string]Config{"write": cfg},
		Runs: map[string]map[string][]*Result{"write": {}}, Fsync: FsyncProbe{Samples: 1, P50: time.Millisecond},
		EtcdVersion: "3.6.16", Build: buildinfo.Info{Version: "(devel)", Revision: "0123456789abcdef0123", Modified: true, GoVersion: "go1.99.1"}}
	// Ops per second of each run: the medians are 2,000 and 1,000.
	ops := map[string][]int64{SystemFlotilla: {2000, 1500, 2600}, SystemEtcd: {900, 1000, 1200}}
	for _, s := range rep.Systems {
		for i, n := range ops[s] {
			h := NewHistogram()
			for range n {
				RecordLatency(h, time.Duration(i+1)*time.Millisecond)
			}
			rep.Runs["write"][s] = append(rep.Runs["write"][s], &Result{System: s, Config: cfg, Latency: h, Ops: n, Elapsed: time.Second,
				Errors: int64(i), CPU: CPUUse{Server: time.Duration(n) * 100 * time.Microsecond * time.Duration(i+1)}})
		}
	}
	path := filepath.Join(t.TempDir(), "out.json")
	if err := rep.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var recs []map[string]any
	if err := json.Unmarshal(b, &recs); err != nil {
		t.Fatal(err)
	}
	if len(recs) != 8 {
		t.Fatalf("%d records, want 3 runs and a median for each of 2 systems", len(recs))
	}
	type minMax struct{ min, max float64 }
	wantSpread := map[string]map[string]minMax{
		SystemFlotilla: {"ops_per_sec": {1500, 2600}, "errors": {0, 2}, "server_cpu_us_per_op": {100, 300}},
		SystemEtcd:     {"ops_per_sec": {900, 1200}, "errors": {0, 2}, "server_cpu_us_per_op": {100, 300}},
	}
	for _, r := range recs {
		sys, stat := r["system"].(string), r["stat"].(string)
		if r["flotilla_version"] != "(devel)" || r["flotilla_revision"] != "0123456789abcdef0123" || r["flotilla_modified"] != true || r["go_version"] != "go1.99.1" {
			t.Errorf("%s %s record: build %v %v %v %v", sys, stat, r["flotilla_version"], r["flotilla_revision"], r["flotilla_modified"], r["go_version"])
		}
		if (sys == SystemEtcd) != (r["etcd_version"] == "3.6.16") {
			t.Errorf("%s %s record: etcd_version %v", sys, stat, r["etcd_version"])
		}
		spread, _ := r["spread"].(map[string]any)
		if stat == "run" {
			if spread != nil {
				t.Errorf("%s run %v has a spread", sys, r["run"])
			}
			continue
		}
		if spread == nil {
			t.Fatalf("%s median record has no spread: %v", sys, r)
		}
		for _, fig := range []string{"ops_per_sec", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms", "errors", "server_cpu_us_per_op", "other_cpu_cores"} {
			mm, ok := spread[fig].(map[string]any)
			if !ok {
				t.Errorf("%s spread lacks %s: %v", sys, fig, spread)
				continue
			}
			lo, hi := mm["min"].(float64), mm["max"].(float64)
			if med, _ := r[fig].(float64); fig != "other_cpu_cores" && (lo > med || med > hi) {
				t.Errorf("%s %s: median %v outside its spread [%v, %v]", sys, fig, med, lo, hi)
			}
			if want, ok := wantSpread[sys][fig]; ok && (lo != want.min || hi != want.max) {
				t.Errorf("%s %s spread [%v, %v], want [%v, %v]", sys, fig, lo, hi, want.min, want.max)
			}
		}
		if p50 := spread["p50_ms"].(map[string]any); p50["min"].(float64) >= p50["max"].(float64) {
			t.Errorf("%s p50 spread %v: the runs' latencies differ", sys, p50)
		}
	}

	var text strings.Builder
	rep.WriteTable(&text)
	for _, re := range []string{
		`(?m)^build: flotilla-bench \(devel\), commit 0123456789ab \(modified\), go1\.99\.1$`,
		`medians of 3 runs per system`,
		`(?m)^\s*flotilla\s+2000\s`, `(?m)^\s*min-max\s+1500-2600\s`,
		`(?m)^\s*etcd\s+1000\s`, `(?m)^\s*min-max\s+900-1200\s`,
	} {
		if !regexp.MustCompile(re).MatchString(text.String()) {
			t.Errorf("the text report has no line matching %s:\n%s", re, text.String())
		}
	}
}
