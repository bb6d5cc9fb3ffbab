package telemetry

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/rpc"
	"github.com/flotilla-kv/flotilla/shard"
)

// ObserveEngine exports the engine's counters and group gauges, and the
// metrics of the Pebble store it runs on (ObservePebble).
func (t *Telemetry) ObserveEngine(e *multiraft.Engine) error {
	if err := t.ObservePebble(e.DB()); err != nil {
		return err
	}
	m := e.Metrics()
	counters := []Counter{
		{"flotilla.engine.proposals", "commands proposed to raft", "", m.Proposals.Load},
		{"flotilla.engine.proposals.dropped", "proposals raft refused (surely not applied)", "", m.ProposalsDropped.Load},
		{"flotilla.engine.entries.applied", "log entries applied", "", m.EntriesApplied.Load},
		{"flotilla.engine.messages.sent", "raft messages handed to the transport", "", m.MessagesSent.Load},
		{"flotilla.engine.elections.won", "leaderships acquired by this node's replicas", "", m.LeadersAcquired.Load},
		{"flotilla.engine.conf_changes", "membership changes applied", "", m.ConfChanges.Load},
		{"flotilla.engine.snapshots.sent", "snapshots sent", "", m.SnapshotsSent.Load},
		{"flotilla.engine.snapshots.applied", "snapshots received and applied", "", m.SnapshotsApplied.Load},
		{"flotilla.engine.snapshots.rejected", "snapshots received and refused", "", m.SnapshotsRejected.Load},
		{"flotilla.engine.log.truncations", "log truncations", "", m.LogTruncations.Load},
		{"flotilla.engine.quiesces", "times a group went quiescent", "", m.Quiesces.Load},
		{"flotilla.engine.leader_pokes", "times a follower that heard nothing from its leader for an election timeout woke it", "", m.LeaderPokes.Load},
		{"flotilla.engine.split_votes_broken", "elections a candidate started two ticks after a split vote instead of a whole election timeout", "", m.SplitVotesBroken.Load},
		{"flotilla.engine.commits_held_back", "appends that carried only a commit index to a caught-up follower, left to the next append or heartbeat", "", m.CommitsHeldBack.Load},
		{"flotilla.engine.read_batches", "ReadIndex rounds (each serves a batch of reads)", "", m.ReadBatches.Load},
		{"flotilla.engine.syncs", "synced raft-state writes (group commits)", "", m.Syncs.Load},
		{"flotilla.engine.sync.groups", "groups carried by synced writes (divide by syncs for the mean)", "", m.SyncGroups.Load},
		{"flotilla.engine.sync.entries", "entries carried by synced writes (divide by syncs for the mean)", "", m.SyncEntries.Load},
		{"flotilla.engine.sync.duration", "time spent in synced writes, fsync included (divide by syncs for the mean)", "ns", m.SyncNanos.Load},
		{"flotilla.engine.messages.dropped", "incoming messages dropped (unknown group or misaddressed)", "", func() uint64 {
			return m.DroppedUnknownGroup.Load() + m.DroppedMisaddressed.Load()
		}},
		{"flotilla.engine.messages.unaddressed", "outgoing messages dropped because the peer's address is unknown", "", m.DroppedNoAddress.Load},
		{"flotilla.engine.step_errors", "messages raft refused to step", "", m.StepErrors.Load},
		{"flotilla.engine.votes_withheld", "votes a recovering replica withheld for an election timeout", "", m.VotesWithheld.Load},
		{"flotilla.engine.ticks_dropped", "ticks a group missed because its previous tick was still queued (overload)", "", m.TicksDropped.Load},
	}
	count := func(pred func(multiraft.GroupSummary) bool) func() int64 {
		return func() int64 {
			var n int64
			for _, g := range e.Summaries() {
				if pred(g) {
					n++
				}
			}
			return n
		}
	}
	gauges := []Gauge{
		{"flotilla.engine.groups", "groups hosted", "", count(func(multiraft.GroupSummary) bool { return true })},
		{"flotilla.engine.groups.quiesced", "groups quiescent", "", count(func(g multiraft.GroupSummary) bool { return g.Quiesced })},
		{"flotilla.engine.groups.active", "groups ticking", "", count(func(g multiraft.GroupSummary) bool { return !g.Quiesced })},
		{"flotilla.engine.leaders", "groups this node leads", "", count(func(g multiraft.GroupSummary) bool { return g.Leading })},
		{"flotilla.engine.log.entries", "log entries held above the last truncation, all groups", "", func() int64 {
			var n int64
			for _, g := range e.Summaries() {
				n += int64(g.LogEntries)
			}
			return n
		}},
		{"flotilla.engine.log.size", "approximate bytes of log held above the last truncation, all groups", "By", func() int64 {
			var n int64
			for _, g := range e.Summaries() {
				n += int64(g.LogBytes)
			}
			return n
		}},
	}
	if err := t.registry.Register(engineHistograms{m}); err != nil {
		return err
	}
	return t.Observe(counters, gauges)
}

// engineHistograms exports the engine's latency histograms, which it keeps
// itself (lock-free buckets), as Prometheus histograms.
type engineHistograms struct{ m *multiraft.Metrics }

var engineHistogramDescs = []struct {
	desc *prometheus.Desc
	h    func(*multiraft.Metrics) *multiraft.LatencyHistogram
}{
	{prometheus.NewDesc("flotilla_engine_sync_latency_seconds", "latency of synced raft-state writes (group commits, fsync included)", nil, nil),
		func(m *multiraft.Metrics) *multiraft.LatencyHistogram { return &m.SyncLatency }},
	{prometheus.NewDesc("flotilla_engine_commit_latency_seconds", "from a proposal on this node to the round that found it committed", nil, nil),
		func(m *multiraft.Metrics) *multiraft.LatencyHistogram { return &m.CommitLatency }},
	{prometheus.NewDesc("flotilla_engine_apply_latency_seconds", "from a committed proposal's round to its result (the apply batch written)", nil, nil),
		func(m *multiraft.Metrics) *multiraft.LatencyHistogram { return &m.ApplyLatency }},
}

func (engineHistograms) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range engineHistogramDescs {
		ch <- d.desc
	}
}

func (c engineHistograms) Collect(ch chan<- prometheus.Metric) {
	for _, d := range engineHistogramDescs {
		buckets, count, sum := d.h(c.m).Snapshot()
		cumulative := make(map[float64]uint64, len(multiraft.HistogramBounds))
		var n uint64
		for i, bound := range multiraft.HistogramBounds {
			n += buckets[i]
			cumulative[bound.Seconds()] = n
		}
		ch <- prometheus.MustNewConstHistogram(d.desc, count, sum.Seconds(), cumulative)
	}
}

// ObserveTransport exports the Raft transport's counters.
func (t *Telemetry) ObserveTransport(tr *rpc.Transport) error {
	read := func(f func(rpc.TransportSnapshot) uint64) func() uint64 {
		return func() uint64 { return f(tr.Stats.Load()) }
	}
	return t.Observe([]Counter{
		{"flotilla.transport.batches", "message batches sent", "", read(func(s rpc.TransportSnapshot) uint64 { return s.Batches })},
		{"flotilla.transport.messages", "raft messages sent", "", read(func(s rpc.TransportSnapshot) uint64 { return s.Messages })},
		{"flotilla.transport.bytes", "bytes of message batches sent", "By", read(func(s rpc.TransportSnapshot) uint64 { return s.Bytes })},
		{"flotilla.transport.received", "raft messages received", "", read(func(s rpc.TransportSnapshot) uint64 { return s.Received })},
		{"flotilla.transport.dropped", "messages dropped on a full queue", "", read(func(s rpc.TransportSnapshot) uint64 { return s.Dropped })},
		{"flotilla.transport.stream_failures", "peer streams that failed", "", read(func(s rpc.TransportSnapshot) uint64 { return s.StreamFailures })},
		{"flotilla.transport.snapshot.bytes", "snapshot bytes sent", "By", read(func(s rpc.TransportSnapshot) uint64 { return s.SnapshotBytes })},
		{"flotilla.transport.snapshots.sent", "snapshot streams sent to completion", "", read(func(s rpc.TransportSnapshot) uint64 { return s.SnapshotsSent })},
		{"flotilla.transport.snapshots.received", "snapshot streams received", "", read(func(s rpc.TransportSnapshot) uint64 { return s.SnapshotsReceived })},
		{"flotilla.transport.snapshots.failed", "snapshot streams that failed", "", read(func(s rpc.TransportSnapshot) uint64 { return s.SnapshotFailures })},
	}, []Gauge{
		{"flotilla.transport.queue", "messages queued for all peers", "", func() int64 { return int64(tr.QueueLen()) }},
	})
}

// ObserveStamper exports how a node's writes get their revisions: the
// timestamp oracle calls made and the writes they stamped (their ratio is
// the writes one call serves).
func (t *Telemetry) ObserveStamper(s *shard.Store) error {
	return t.Observe([]Counter{
		{"flotilla.shard.oracle.calls", "timestamp oracle calls made to stamp writes", "", func() uint64 { c, _ := s.OracleStats(); return c }},
		{"flotilla.shard.oracle.stamped", "writes stamped by those calls", "", func() uint64 { _, n := s.OracleStats(); return n }},
	}, nil)
}
