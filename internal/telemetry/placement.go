package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/flotilla-kv/flotilla/placement"
	"github.com/flotilla-kv/flotilla/placement/schedule"
)

// ObservePlacement exports a placement service's metrics, read at scrape
// time: operators started, done and failed by kind (create, repair,
// drain, zone, split, balance-replica, balance-leader), and, on the
// leader (zero on followers), nodes up and down, shards known, and the
// cluster's health as flotilla status and the status page show it (the
// same computation, Service.Health): shards under-replicated,
// unavailable, lagging, blocked and waiting; with Service.ObserveStatus,
// operators running by kind and the status page's problems by kind.
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
	// Operators running by kind and the status page's problems by kind
	// (placement/metrics.go).
	if err := svc.ObserveStatus(t.Meter); err != nil {
		return err
	}
	_, _, _, up, down, shards := svc.Telemetry()
	// health reads one field of the leader's Health (0 on a follower);
	// the gauges of one scrape share one computation (it is cached for a
	// fraction of a heartbeat interval).
	health := func(field func(schedule.Health) int) func() int64 {
		return func() int64 {
			h, ok := svc.Health()
			if !ok {
				return 0
			}
			return int64(field(h))
		}
	}
	return t.Observe(nil, []Gauge{
		{Name: "flotilla.placement.nodes.up", Description: "nodes heartbeating, draining ones included (leader only)", Read: up},
		{Name: "flotilla.placement.nodes.down", Description: "nodes silent for three heartbeat intervals (leader only); their replicas are replaced after --down-after", Read: down},
		{Name: "flotilla.placement.shards", Description: "shards known from heartbeats (leader only)", Read: shards},
		{Name: "flotilla.placement.shards.under_replicated", Description: "shards with fewer live voters than the replication factor; a voter on a node silent for three heartbeat intervals is not live (leader only)",
			Read: health(func(h schedule.Health) int { return h.UnderReplicated })},
		{Name: "flotilla.placement.shards.unavailable", Description: "shards whose live voters are not a quorum: they serve nothing until their nodes return (leader only)",
			Read: health(func(h schedule.Health) int { return h.Unavailable })},
		{Name: "flotilla.placement.shards.lagging", Description: "shards whose leader reports a replica behind (leader only)",
			Read: health(func(h schedule.Health) int { return h.Lagging })},
		{Name: "flotilla.placement.shards.blocked", Description: "shards needing a repair or a drain that cannot happen until a node joins or returns; flotilla status says why (leader only)",
			Read: health(func(h schedule.Health) int { return h.BlockedShards })},
		{Name: "flotilla.placement.shards.waiting", Description: "shards whose repair or drain waits for the per-node limits (leader only)",
			Read: health(func(h schedule.Health) int { return h.WaitingShards })},
	})
}
