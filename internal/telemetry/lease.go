package telemetry

import "github.com/flotilla-kv/flotilla/lease"

// ObserveLeases exports a node's lessor: the leases it counts time for,
// and what it granted, expired, revoked, kept alive and checkpointed.
// Keepalive latency is the KV.LeaseKeepAlive method's in the server's
// request histogram.
func (t *Telemetry) ObserveLeases(l *lease.Lessor) error {
	read := func(f func(lease.Counters) uint64) func() uint64 {
		return func() uint64 { return f(l.Counters()) }
	}
	return t.Observe([]Counter{
		{"flotilla.lease.granted", "leases granted by this node as home leader", "", read(func(c lease.Counters) uint64 { return c.Granted })},
		{"flotilla.lease.expired", "leases this node ended at their deadline", "", read(func(c lease.Counters) uint64 { return c.Expired })},
		{"flotilla.lease.revoked", "leases this node revoked", "", read(func(c lease.Counters) uint64 { return c.Revoked })},
		{"flotilla.lease.keepalives", "keepalives this node acknowledged", "", read(func(c lease.Counters) uint64 { return c.KeptAlive })},
		{"flotilla.lease.checkpoints", "remaining TTLs this node checkpointed through Raft", "", read(func(c lease.Counters) uint64 { return c.Checkpointed })},
	}, []Gauge{
		{"flotilla.lease.leases", "leases whose time this node counts (it leads their home shards)", "", func() int64 { return int64(l.Count()) }},
	})
}
