package deploy

import (
	"context"
	"fmt"
	"net/http/httptest"
	"regexp"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/internal/fleet"
	"github.com/flotilla-kv/flotilla/internal/telemetry"
	"github.com/flotilla-kv/flotilla/internal/testutil"
	"github.com/flotilla-kv/flotilla/router"
)

// TestDashboardMetricsExist runs a real fleet (one placementd, three
// shardnodes) and a router exporting its metrics, puts and gets keys, and
// checks that every series the Grafana dashboard queries, and every
// series an alerting rule of prometheus/alerts.yaml reads, is in their
// /metrics scrapes: a renamed or removed metric fails here, not silently
// on an operator's screen or in an alert that can never fire.
func TestDashboardMetricsExist(t *testing.T) {
	f := fleet.New(t, 3)
	f.AddPlacement(1, "--replication-factor", "3", "--initial-shards", "4")
	f.StartPlacement()
	f.Start()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, routerMetrics := observedRouter(ctx, t, []string{f.PlacementAddrs()})

	testutil.Eventually(t, 60*time.Second, func() error {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		defer pcancel()
		return r.Put(pctx, []byte("warm"), []byte("up"))
	})
	for i := range 50 {
		k := fmt.Appendf(nil, "key-%03d", i)
		if err := r.Put(ctx, k, []byte("v")); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
		if _, found, err := r.Get(ctx, k); err != nil || !found {
			t.Fatalf("get %s: found=%v err=%v", k, found, err)
		}
	}

	// Operators are counted by kind: the bootstrap's four create
	// operators end done.
	createDone := regexp.MustCompile(`(?m)^flotilla_placement_operators_done_total\{[^}]*kind="create"[^}]*\} 4$`)
	testutil.Eventually(t, 30*time.Second, func() error {
		b := httpGet(t, "http://"+f.Placement[1].HTTP+"/metrics")
		if !createDone.Match(b) {
			return fmt.Errorf("no flotilla_placement_operators_done_total{kind=\"create\"} 4 in placementd's /metrics")
		}
		return nil
	})

	have := map[string]float64{}
	urls := []string{routerMetrics, "http://" + f.Placement[1].HTTP + "/metrics"}
	for _, n := range f.Nodes {
		urls = append(urls, "http://"+n.HTTP+"/metrics")
	}
	for _, u := range urls {
		m, err := scrape(u)
		if err != nil {
			t.Fatal(err)
		}
		merge(have, m)
	}
	// The scrape itself must show the fleet at work, or the names below
	// would prove little.
	for _, name := range []string{"flotilla_engine_proposals_total", "flotilla_rpc_server_requests_total", "flotilla_router_route_cache_hits_total", "flotilla_placement_operators_started_total"} {
		if have[name] <= 0 {
			t.Errorf("%s = %v after the workload, want > 0", name, have[name])
		}
	}
	checkDashboard(t, have)
	checkAlerts(t, have)
}

// observedRouter returns a router over the placement addresses whose
// metrics a test server exports, and the URL of that /metrics; both are
// closed when the test ends.
func observedRouter(ctx context.Context, t *testing.T, placements []string) (*router.Client, string) {
	t.Helper()
	r, err := router.New(ctx, router.Config{PlacementAddresses: placements})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	tel, err := telemetry.New("router")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tel.Shutdown(context.Background()) })
	if err := tel.ObserveRouter(r); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(tel.Handler)
	t.Cleanup(srv.Close)
	return r, srv.URL + "/metrics"
}
