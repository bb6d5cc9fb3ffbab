package router

import (
	"context"
	"sync/atomic"

	"google.golang.org/grpc/stats"
)

// Whether a failed request may have reached a node decides whether a
// failed write may have applied. gRPC answers Unavailable both when it
// never got a connection for the call (the node refused it: the request
// never left this process) and when a connection broke under a call in
// flight (the node may have received and applied it), so the code alone
// cannot tell. A sendRecord travels in the context of each attempt, and
// sendTracker, a stats.Handler on every connection of the Client, marks it
// when gRPC puts a stream for the call on a connection: that event
// (stats.OutHeader) comes right after the call's headers are queued for
// the wire, and nothing of the call is written before it. A call that
// failed without it surely never reached the node.
//
// Marked is "may have been sent", never "was received": a mark is
// conservative, and only its absence is relied on.

// sendRecord records whether a request may have left the Client. Safe for
// concurrent use.
type sendRecord struct {
	sent atomic.Bool
}

// mark records that the request may have been sent.
func (r *sendRecord) mark() { r.sent.Store(true) }

// maybeSent reports whether the request may have been sent.
func (r *sendRecord) maybeSent() bool { return r.sent.Load() }

type sendRecordKey struct{}

// withSendRecord returns ctx carrying r: every gRPC call made with the
// returned context (or one derived from it) marks r when it is sent.
func withSendRecord(ctx context.Context, r *sendRecord) context.Context {
	return context.WithValue(ctx, sendRecordKey{}, r)
}

// sendRecordOf returns the record ctx carries, or nil.
func sendRecordOf(ctx context.Context) *sendRecord {
	r, _ := ctx.Value(sendRecordKey{}).(*sendRecord)
	return r
}

// sendTracker marks the sendRecord of a call once gRPC has created the
// call's stream on a connection. It is stateless; one value serves every
// connection.
type sendTracker struct{}

var _ stats.Handler = sendTracker{}

func (sendTracker) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }

func (sendTracker) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if _, ok := s.(*stats.OutHeader); ok {
		if r := sendRecordOf(ctx); r != nil {
			r.mark()
		}
	}
}

func (sendTracker) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

func (sendTracker) HandleConn(context.Context, stats.ConnStats) {}
