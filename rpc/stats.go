package rpc

import "sync/atomic"

type counters struct {
	batches           atomic.Uint64
	messages          atomic.Uint64
	bytes             atomic.Uint64
	received          atomic.Uint64
	dropped           atomic.Uint64
	streamFailures    atomic.Uint64
	snapshotsSent     atomic.Uint64
	snapshotsReceived atomic.Uint64
	snapshotFailures  atomic.Uint64
	snapshotBytes     atomic.Uint64
}

// TransportSnapshot is a copy of the transport's counters.
type TransportSnapshot struct {
	Batches, Messages, Bytes, Received, Dropped, StreamFailures uint64
	SnapshotsSent, SnapshotsReceived, SnapshotFailures          uint64
	SnapshotBytes                                               uint64
}

// Load copies the counters.
func (s *TransportStats) Load() TransportSnapshot {
	return TransportSnapshot{
		Batches: s.batches.Load(), Messages: s.messages.Load(), Bytes: s.bytes.Load(),
		Received: s.received.Load(), Dropped: s.dropped.Load(), StreamFailures: s.streamFailures.Load(),
		SnapshotsSent: s.snapshotsSent.Load(), SnapshotsReceived: s.snapshotsReceived.Load(),
		SnapshotFailures: s.snapshotFailures.Load(), SnapshotBytes: s.snapshotBytes.Load(),
	}
}
