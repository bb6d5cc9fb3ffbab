package multiraft

import (
	"context"
	"io"

	"go.etcd.io/raft/v3/raftpb"
)

// Message is a Raft message of one group, addressed to a node.
type Message struct {
	Group GroupID
	// ToNode hosts the replica named by Msg.To; FromNode the sender (set
	// by the sending engine, so a replica that does not yet know its
	// group's membership can still answer).
	ToNode   NodeID
	FromNode NodeID
	Msg      *raftpb.Message
	// Quiesce marks a heartbeat by which the leader tells a caught-up
	// follower to stop ticking the group until the next message.
	Quiesce bool
}

// A Transport carries Raft messages and snapshots between engines. The
// engine calls Send from its workers, so Send must never block: a transport
// that cannot queue a message drops it (Raft retransmits) and may report
// the peer unreachable through Engine.ReportUnreachable.
//
// Receiving is the transport's side: it hands incoming messages to
// Engine.Step and incoming snapshots to Engine.ReceiveSnapshot.
type Transport interface {
	// Send queues msgs for delivery. The transport owns msgs after the call;
	// the engine does not reuse them.
	Send(msgs []Message)

	// SendSnapshot starts streaming snap to snap.Msg's node, without
	// blocking. The transport reads the body with snap.WriteTo, then calls
	// snap.Close exactly once, whether or not the transfer succeeded, and
	// reports the outcome with Engine.ReportSnapshot.
	SendSnapshot(snap *OutgoingSnapshot)
}

// OutgoingSnapshot is a snapshot on its way to one replica. Its body is
// generated on demand from a Pebble snapshot, so it costs no memory until
// read.
type OutgoingSnapshot struct {
	// Msg is the MsgSnap to step on the receiver once the body arrived.
	Message
	// write streams the state machine's image.
	write func(ctx context.Context, w io.Writer) error
	close func()
}

// WriteTo streams the snapshot's body to w. It may be called more than once
// (a retried transfer) until Close.
func (s *OutgoingSnapshot) WriteTo(ctx context.Context, w io.Writer) error { return s.write(ctx, w) }

// Close releases the Pebble snapshot behind the body.
func (s *OutgoingSnapshot) Close() { s.close() }
