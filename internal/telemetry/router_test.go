package telemetry_test

import (
	"context"
	"io"
	"net/http/httptest"
	"regexp"
	"testing"

	"github.com/flotilla-kv/flotilla/internal/telemetry"
	"github.com/flotilla-kv/flotilla/router"
)

type fakeRouter struct{ s router.Stats }

func (f *fakeRouter) Stats() router.Stats { return f.s }

func scrapeText(t *testing.T, tel *telemetry.Telemetry) string {
	t.Helper()
	rec := httptest.NewRecorder()
	tel.Handler.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, err := io.ReadAll(rec.Result().Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestObserveRouter checks that a router's counters reach /metrics with
// the reason of each retry as a label, and follow the counters as they
// move.
func TestObserveRouter(t *testing.T) {
	tel, err := telemetry.New("test")
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	f := &fakeRouter{}
	f.s.Retries[router.RetryNotLeader] = 3
	f.s.Retries[router.RetryUnavailable] = 1
	f.s.CacheHits, f.s.CacheMisses, f.s.CachedRoutes = 40, 2, 16
	if err := tel.ObserveRouter(f); err != nil {
		t.Fatal(err)
	}
	want := func(text string, series string, value string) {
		t.Helper()
		re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + `(\{[^}]*\})? ` + regexp.QuoteMeta(value) + `$`)
		if !re.MatchString(text) {
			t.Errorf("no %s = %s in:\n%s", series, value, text)
		}
	}
	text := scrapeText(t, tel)
	for _, c := range []struct{ reason, value string }{{"not-leader", "3"}, {"unavailable", "1"}, {"busy", "0"}} {
		re := regexp.MustCompile(`(?m)^flotilla_router_retries_total\{[^}]*reason="` + c.reason + `"[^}]*\} ` + c.value + `$`)
		if !re.MatchString(text) {
			t.Errorf("no flotilla_router_retries_total{reason=%q} = %s in:\n%s", c.reason, c.value, text)
		}
	}
	want(text, "flotilla_router_route_cache_hits_total", "40")
	want(text, "flotilla_router_route_cache_misses_total", "2")
	want(text, "flotilla_router_route_cache_routes", "16")

	f.s.CacheHits = 41
	want(scrapeText(t, tel), "flotilla_router_route_cache_hits_total", "41")
}
