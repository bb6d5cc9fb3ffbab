package telemetry

import (
	"io"
	"net/http/httptest"
	"regexp"
	"strconv"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestPebbleWALFsyncLatency scrapes the WAL fsync histogram of a store
// that made synced writes: it counts at least one fsync per write, in
// seconds, with the bounds walFsyncBounds keeps of Pebble's and cumulative
// counts that end at the count.
func TestPebbleWALFsyncLatency(t *testing.T) {
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
	const writes = 20
	for i := range writes {
		if err := db.Set([]byte{byte(i)}, []byte("v"), pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	rec := httptest.NewRecorder()
	tel.Handler.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Result().Body)
	page := string(body)

	count := regexp.MustCompile(`(?m)^flotilla_pebble_wal_fsync_latency_seconds_count (\d+)$`).FindStringSubmatch(page)
	if count == nil {
		t.Fatalf("/metrics has no flotilla_pebble_wal_fsync_latency_seconds_count:\n%s", page)
	}
	n, _ := strconv.Atoi(count[1])
	if n < writes {
		t.Errorf("fsyncs counted: %d, want at least %d (one per synced write)", n, writes)
	}
	buckets := regexp.MustCompile(`(?m)^flotilla_pebble_wal_fsync_latency_seconds_bucket\{le="([^"]+)"\} (\d+)$`).FindAllStringSubmatch(page, -1)
	// The kept bounds and +Inf.
	if len(buckets) != len(walFsyncBounds)+1 {
		t.Errorf("%d buckets, want %d", len(buckets), len(walFsyncBounds)+1)
	}
	var les []string
	prev := -1
	for _, b := range buckets {
		les = append(les, b[1])
		c, _ := strconv.Atoi(b[2])
		if c < prev {
			t.Errorf("bucket le=%s counts %d, fewer than the bucket below it (%d)", b[1], c, prev)
		}
		prev = c
	}
	for _, le := range []string{"0.0001", "0.001", "0.005", "10", "+Inf"} {
		if !regexp.MustCompile(`le="` + regexp.QuoteMeta(le) + `"`).MatchString(page) {
			t.Errorf("no bucket le=%q among %v (the bounds must be seconds)", le, les)
		}
	}
	if prev != n {
		t.Errorf("the +Inf bucket counts %d, the histogram %d", prev, n)
	}
}
