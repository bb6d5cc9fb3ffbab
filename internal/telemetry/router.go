package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/flotilla-kv/flotilla/router"
)

// RouterStats is what ObserveRouter reads: a *router.Client.
type RouterStats interface {
	Stats() router.Stats
}

// ObserveRouter exports a router client's counters, read at scrape time:
// retries by reason, route cache hits and misses, route loads, evictions
// and the routes cached, and writes that ended ambiguous. Register one
// client per Telemetry.
func (t *Telemetry) ObserveRouter(c RouterStats) error {
	retries, err := t.Meter.Int64ObservableCounter("flotilla.router.retries",
		metric.WithDescription("requests the router retried, by reason (not-leader, epoch-not-match, busy, unavailable, ...)"))
	if err != nil {
		return err
	}
	reasons := make([]metric.ObserveOption, router.NumRetryReasons)
	for r := range router.NumRetryReasons {
		reasons[r] = metric.WithAttributes(attribute.String("reason", r.String()))
	}
	plain := []struct {
		name, desc string
		read       func(router.Stats) int64
		counter    bool
	}{
		{"flotilla.router.route_cache.hits", "route lookups answered by the route cache", func(s router.Stats) int64 { return int64(s.CacheHits) }, true},
		{"flotilla.router.route_cache.misses", "route lookups the route cache could not answer", func(s router.Stats) int64 { return int64(s.CacheMisses) }, true},
		{"flotilla.router.route_cache.evictions", "routes evicted from the full route cache", func(s router.Stats) int64 { return int64(s.CacheEvictions) }, true},
		{"flotilla.router.route_loads", "route loads from placement (GetRoute, ScanRoutes)", func(s router.Stats) int64 { return int64(s.RouteLoads) }, true},
		{"flotilla.router.route_load_errors", "route loads from placement that failed", func(s router.Stats) int64 { return int64(s.RouteLoadErrors) }, true},
		{"flotilla.router.ambiguous", "writes that ended ambiguous (may or may not have applied)", func(s router.Stats) int64 { return int64(s.Ambiguous) }, true},
		{"flotilla.router.route_cache.routes", "routes in the route cache", func(s router.Stats) int64 { return int64(s.CachedRoutes) }, false},
	}
	obs := []metric.Observable{retries}
	insts := make([]metric.Int64Observable, len(plain))
	for i, p := range plain {
		if p.counter {
			insts[i], err = t.Meter.Int64ObservableCounter(p.name, metric.WithDescription(p.desc))
		} else {
			insts[i], err = t.Meter.Int64ObservableGauge(p.name, metric.WithDescription(p.desc))
		}
		if err != nil {
			return err
		}
		obs = append(obs, insts[i])
	}
	_, err = t.Meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s := c.Stats()
		for r, n := range s.Retries {
			o.ObserveInt64(retries, int64(n), reasons[r])
		}
		for i, p := range plain {
			o.ObserveInt64(insts[i], p.read(s))
		}
		return nil
	}, obs...)
	return err
}
