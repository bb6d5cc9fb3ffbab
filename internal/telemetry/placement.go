package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/flotilla-kv/flotilla/placement"
)

// ObservePlacement exports a placement service's metrics, read at scrape
// time: operators started, done and failed by kind (create, repair,
// drain, zone, split, balance-replica, balance-leader), and, on the
// leader (zero on followers), nodes up and down and shards known.
func (t *Telemetry) ObservePlacement(svc *placement.Service) error {
	type kindCounter struct {
		inst metric.Int64ObservableCounter
		read func(placement.OperatorCounts) uint64
	}
	var kinds []kindCounter
	for _, k := range []struct {
		name, desc string
		read       func(placement.OperatorCounts) uint64
	}{
		{"flotilla.placement.operators.started", "operators started by this replica's scheduler, by kind", func(c placement.OperatorCounts) uint64 { return c.Started }},
		{"flotilla.placement.operators.done", "operators whose steps all succeeded, by kind", func(c placement.OperatorCounts) uint64 { return c.Done }},
		{"flotilla.placement.operators.failed", "operators that failed (decided again by a later round), by kind", func(c placement.OperatorCounts) uint64 { return c.Failed }},
	} {
		inst, err := t.Meter.Int64ObservableCounter(k.name, metric.WithDescription(k.desc))
		if err != nil {
			return err
		}
		kinds = append(kinds, kindCounter{inst, k.read})
	}
	obs := make([]metric.Observable, len(kinds))
	for i, k := range kinds {
		obs[i] = k.inst
	}
	if _, err := t.Meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for kind, c := range svc.OperatorCounts() {
			kindAttr := metric.WithAttributes(attribute.String("kind", kind))
			for _, k := range kinds {
				o.ObserveInt64(k.inst, int64(k.read(c)), kindAttr)
			}
		}
		return nil
	}, obs...); err != nil {
		return err
	}
	_, _, _, up, down, shards := svc.Telemetry()
	return t.Observe(nil, []Gauge{
		{Name: "flotilla.placement.nodes.up", Description: "nodes heartbeating, draining ones included (leader only)", Read: up},
		{Name: "flotilla.placement.nodes.down", Description: "nodes silent for three heartbeat intervals (leader only); their replicas are replaced after --down-after", Read: down},
		{Name: "flotilla.placement.shards", Description: "shards known from heartbeats (leader only)", Read: shards},
	})
}
