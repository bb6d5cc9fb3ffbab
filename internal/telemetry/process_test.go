package telemetry

import (
	"io"
	"net/http/httptest"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestProcessPebbleAndBuildInfo scrapes a Telemetry's handler and finds
// the process, Go runtime and build-info metrics every binary serves, and
// the Pebble metrics of a store it observes, with the values the store
// had: a flush it was asked for is counted.
func TestProcessPebbleAndBuildInfo(t *testing.T) {
	tel, err := New("testservice")
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(t.Context())
	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := tel.ObservePebble(db); err != nil {
		t.Fatal(err)
	}
	if err := db.Set([]byte("k"), []byte("v"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	tel.Handler.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Result().Body)
	page := string(body)
	want := []string{
		`(?m)^go_goroutines \d+$`,
		`(?m)^go_memstats_heap_alloc_bytes \d`,
		`(?m)^flotilla_build_info\{goversion="` + regexp.QuoteMeta(runtime.Version()) + `",modified="(true|false)",revision="[^"]+",service="testservice",version="[^"]+"\} 1$`,
		`(?m)^flotilla_pebble_flushes_total [1-9]`,
		`(?m)^flotilla_pebble_compactions_total \d`,
		`(?m)^flotilla_pebble_l0_files [1-9]`,
		`(?m)^flotilla_pebble_l0_sublevels \d`,
		`(?m)^flotilla_pebble_read_amplification [1-9]`,
		`(?m)^flotilla_pebble_memtable_bytes [1-9]`,
		`(?m)^flotilla_pebble_wal_written_bytes_total [1-9]`,
		`(?m)^flotilla_pebble_compaction_debt_bytes \d`,
		`(?m)^flotilla_pebble_block_cache_hits_total \d`,
	}
	if runtime.GOOS == "linux" {
		// The process collector reads /proc.
		want = append(want, `(?m)^process_cpu_seconds_total \d`, `(?m)^process_resident_memory_bytes [1-9]`, `(?m)^process_open_fds [1-9]`)
	}
	for _, re := range want {
		if !regexp.MustCompile(re).MatchString(page) {
			t.Errorf("/metrics has no line matching %s", re)
		}
	}
	if t.Failed() {
		var lines []string
		for _, l := range strings.Split(page, "\n") {
			if strings.HasPrefix(l, "flotilla_") || strings.HasPrefix(l, "process_") {
				lines = append(lines, l)
			}
		}
		t.Logf("the page's flotilla_ and process_ lines:\n%s", strings.Join(lines, "\n"))
	}
}
