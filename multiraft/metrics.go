package multiraft

import (
	"sync/atomic"
	"time"
)

// Metrics are the engine's counters, updated with atomics on the hot path
// and read by anyone (the telemetry exporter, benchmarks, tests).
type Metrics struct {
	Proposals           atomic.Uint64
	ProposalsDropped    atomic.Uint64
	EntriesApplied      atomic.Uint64
	MessagesSent        atomic.Uint64
	StepErrors          atomic.Uint64
	DroppedUnknownGroup atomic.Uint64
	DroppedNoAddress    atomic.Uint64
	DroppedMisaddressed atomic.Uint64
	VotesWithheld       atomic.Uint64
	LeadersAcquired     atomic.Uint64
	ConfChanges         atomic.Uint64
	SnapshotsSent       atomic.Uint64
	SnapshotsApplied    atomic.Uint64
	SnapshotsRejected   atomic.Uint64
	LogTruncations      atomic.Uint64
	Quiesces            atomic.Uint64
	// DroppedTombstoned counts messages for a replica this node removed
	// (see Engine.Tombstone).
	DroppedTombstoned atomic.Uint64
	// ReplicasCreated counts empty replicas created by a message of their
	// group's leader; ReplicasSuperseded those destroyed because a leader
	// addressed a newer replica of their group on this node;
	// ReplicasInitializedBySplit the empty replicas a local split then
	// initialised (see layout.go).
	ReplicasCreated            atomic.Uint64
	ReplicasSuperseded         atomic.Uint64
	ReplicasInitializedBySplit atomic.Uint64
	// SnapshotsOverlapping counts snapshots refused because their span
	// overlapped another group's on this node (see layout.go).
	SnapshotsOverlapping atomic.Uint64
	// LeaderPokes counts the pokes of awake followers that heard nothing
	// from their leader for an election timeout (see round.pokeLeader).
	LeaderPokes atomic.Uint64
	// SplitVotesBroken counts the elections a candidate started early to
	// end a split vote (see round.sawSplitVote).
	SplitVotesBroken atomic.Uint64
	// CommitsHeldBack counts appends that carried only a commit index to a
	// caught-up follower and were not sent (see round.route).
	CommitsHeldBack atomic.Uint64
	ReadBatches     atomic.Uint64

	// Syncs counts synced raft-state writes; SyncGroups and SyncEntries sum
	// the groups and entries they carried, SyncNanos their latency.
	Syncs       atomic.Uint64
	SyncGroups  atomic.Uint64
	SyncEntries atomic.Uint64
	SyncNanos   atomic.Uint64

	// TicksDropped counts ticks a group missed because its previous tick
	// was not processed yet: a sign that the node is overloaded.
	TicksDropped atomic.Uint64

	// SyncLatency is the latency of each synced raft-state write (the
	// group commit, fsync included). CommitLatency runs from a proposal on
	// this node to the round that found it committed, ApplyLatency from
	// there to its result (the apply batch written): both only for
	// proposals this node led to commitment.
	SyncLatency, CommitLatency, ApplyLatency LatencyHistogram
}

func (m *Metrics) observeSync(d time.Duration, groups, entries int) {
	m.Syncs.Add(1)
	m.SyncGroups.Add(uint64(groups))
	m.SyncEntries.Add(uint64(entries))
	m.SyncNanos.Add(uint64(d))
	m.SyncLatency.Observe(d)
}

// Metrics returns the engine's live counters. The caller must not modify
// them.
func (e *Engine) Metrics() *Metrics { return &e.metrics }
