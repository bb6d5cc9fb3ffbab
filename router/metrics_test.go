package router

import (
	"context"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/grpc/codes"

	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// collectMetrics reads reader's router metrics: each counter or gauge's value,
// retries under "flotilla.router.retries/<reason>".
func collectMetrics(t *testing.T, reader *sdkmetric.ManualReader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != MeterName {
			continue
		}
		for _, m := range sm.Metrics {
			var points []metricdata.DataPoint[int64]
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				if !d.IsMonotonic {
					t.Errorf("%s is not monotonic", m.Name)
				}
				points = d.DataPoints
			case metricdata.Gauge[int64]:
				points = d.DataPoints
			default:
				t.Fatalf("%s: unexpected data %T", m.Name, m.Data)
			}
			for _, p := range points {
				name := m.Name
				if r, ok := p.Attributes.Value(attribute.Key("reason")); ok {
					name += "/" + r.AsString()
				}
				got[name] = p.Value
			}
		}
	}
	return got
}

// TestMeterProviderReceivesTheCounters: a Client given a MeterProvider
// reports what its Stats say, retries by reason included, and stops
// reporting at Close.
func TestMeterProviderReceivesTheCounters(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { mp.Shutdown(context.Background()) })

	n := newFakeNode(t, 1)
	var calls atomic.Int64
	n.hook = func(string, *pb.RequestHeader) error {
		if calls.Add(1) == 1 {
			return withDetail(codes.ResourceExhausted, &pb.Busy{RetryAfterMs: 1})
		}
		return nil
	}
	c := newTestClient(t, newStaticSource(fakeRoute(1, "", "", 1, n)), func(cfg *Config) { cfg.MeterProvider = mp })
	ctx := context.Background()
	if err := c.Put(ctx, []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Get(ctx, []byte("k")); err != nil {
		t.Fatal(err)
	}
	st := c.Stats()
	got := collectMetrics(t, reader)
	for name, want := range map[string]int64{
		"flotilla.router.retries/busy":          int64(st.Retries[RetryBusy]),
		"flotilla.router.retries/not-leader":    0,
		"flotilla.router.route_cache.hits":      int64(st.CacheHits),
		"flotilla.router.route_cache.misses":    int64(st.CacheMisses),
		"flotilla.router.route_loads":           int64(st.RouteLoads),
		"flotilla.router.requests":              int64(st.Requests),
		"flotilla.router.rpcs":                  int64(st.RPCs),
		"flotilla.router.route_cache.routes":    int64(st.CachedRoutes),
		"flotilla.router.ambiguous":             0,
		"flotilla.router.route_cache.evictions": 0,
	} {
		if v, ok := got[name]; !ok || v != want {
			t.Errorf("%s = %d (reported %v), want %d", name, v, ok, want)
		}
	}
	if st.Retries[RetryBusy] != 1 || st.Requests < 3 || st.CacheHits == 0 {
		t.Errorf("the workload did not move the counters it should: %+v", st)
	}

	c.Close()
	if got := collectMetrics(t, reader); len(got) != 0 {
		t.Errorf("after Close the provider still receives %d router series", len(got))
	}
}
