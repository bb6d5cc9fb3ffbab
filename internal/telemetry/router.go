package telemetry

import (
	"github.com/flotilla-kv/flotilla/router"
)

// RouterStats is what ObserveRouter reads: a *router.Client.
type RouterStats interface {
	Stats() router.Stats
}

// ObserveRouter exports a router client's counters, read at scrape time,
// as router.RegisterMetrics names them: retries by reason, route cache
// hits and misses, route loads, evictions and the routes cached, writes
// that ended ambiguous, requests and RPCs. Register one client per
// Telemetry. (A router built with Config.MeterProvider set to t's
// provider does the same by itself.)
func (t *Telemetry) ObserveRouter(c RouterStats) error {
	_, err := router.RegisterMetrics(t.Meter, c.Stats)
	return err
}
