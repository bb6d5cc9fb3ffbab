package router

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// MeterName is the instrumentation scope of the Client's metrics: the
// name Config.MeterProvider's meter is asked for.
const MeterName = "github.com/flotilla-kv/flotilla/router"

// RegisterMetrics exports the counters stats returns (a Client's Stats)
// as OpenTelemetry instruments of meter, read at each collection:
//
//	flotilla.router.retries{reason}          retried attempts by RetryReason
//	flotilla.router.route_cache.hits         route lookups the cache answered
//	flotilla.router.route_cache.misses       route lookups it could not answer
//	flotilla.router.route_cache.evictions    routes evicted from the full cache
//	flotilla.router.route_cache.routes       routes cached now (a gauge)
//	flotilla.router.route_loads              route loads from the RouteSource
//	flotilla.router.route_load_errors        route loads that failed
//	flotilla.router.ambiguous                writes that ended ambiguous
//	flotilla.router.requests                 requests sent to nodes
//	flotilla.router.rpcs                     RPCs that carried them
//	flotilla.router.framed_rpcs              those over framed KV connections
//	flotilla.router.framed_fallbacks         nodes that refused framed ones
//
// Every instrument but the gauge is a monotonic counter. Unregister the
// returned registration to stop reporting (Client.Close does it for the
// registration Config.MeterProvider made). Programs that export with
// Prometheus see the names with dots as underscores and a _total suffix
// on counters.
func RegisterMetrics(meter metric.Meter, stats func() Stats) (metric.Registration, error) {
	retries, err := meter.Int64ObservableCounter("flotilla.router.retries",
		metric.WithDescription("requests the router retried, by reason (not-leader, epoch-not-match, busy, unavailable, ...)"))
	if err != nil {
		return nil, err
	}
	reasons := make([]metric.ObserveOption, NumRetryReasons)
	for r := range NumRetryReasons {
		reasons[r] = metric.WithAttributes(attribute.String("reason", r.String()))
	}
	plain := []struct {
		name, desc string
		read       func(Stats) int64
		counter    bool
	}{
		{"flotilla.router.route_cache.hits", "route lookups answered by the route cache", func(s Stats) int64 { return int64(s.CacheHits) }, true},
		{"flotilla.router.route_cache.misses", "route lookups the route cache could not answer", func(s Stats) int64 { return int64(s.CacheMisses) }, true},
		{"flotilla.router.route_cache.evictions", "routes evicted from the full route cache", func(s Stats) int64 { return int64(s.CacheEvictions) }, true},
		{"flotilla.router.route_loads", "route loads from placement (GetRoute, ScanRoutes)", func(s Stats) int64 { return int64(s.RouteLoads) }, true},
		{"flotilla.router.route_load_errors", "route loads from placement that failed", func(s Stats) int64 { return int64(s.RouteLoadErrors) }, true},
		{"flotilla.router.ambiguous", "writes that ended ambiguous (may or may not have applied)", func(s Stats) int64 { return int64(s.Ambiguous) }, true},
		{"flotilla.router.requests", "requests (get, put, delete, compare-and-swap attempts) sent to nodes", func(s Stats) int64 { return int64(s.Requests) }, true},
		{"flotilla.router.rpcs", "RPCs that carried the requests; requests/rpcs is the mean batch", func(s Stats) int64 { return int64(s.RPCs) }, true},
		{"flotilla.router.framed_rpcs", "RPCs sent over framed KV connections instead of gRPC", func(s Stats) int64 { return int64(s.FramedRPCs) }, true},
		{"flotilla.router.framed_fallbacks", "times a node refused framed KV connections and was called over gRPC", func(s Stats) int64 { return int64(s.FramedFallbacks) }, true},
		{"flotilla.router.route_cache.routes", "routes in the route cache", func(s Stats) int64 { return int64(s.CachedRoutes) }, false},
	}
	obs := []metric.Observable{retries}
	insts := make([]metric.Int64Observable, len(plain))
	for i, p := range plain {
		if p.counter {
			insts[i], err = meter.Int64ObservableCounter(p.name, metric.WithDescription(p.desc))
		} else {
			insts[i], err = meter.Int64ObservableGauge(p.name, metric.WithDescription(p.desc))
		}
		if err != nil {
			return nil, err
		}
		obs = append(obs, insts[i])
	}
	return meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s := stats()
		for r, n := range s.Retries {
			o.ObserveInt64(retries, int64(n), reasons[r])
		}
		for i, p := range plain {
			o.ObserveInt64(insts[i], p.read(s))
		}
		return nil
	}, obs...)
}
