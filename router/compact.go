package router

import (
	"bytes"
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/internal/keyfmt"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// Compact compacts every shard owning a part of [start, end) (an empty
// end is +inf) to revision rev: from then on, reads and watches of those
// shards below rev fail with *CompactedError, and writes prune the
// versions no read at rev or later can see. Compaction is per shard, so
// it applies to the whole of each shard the range touches, not only to
// the range. A shard's compaction revision only grows (a lower rev
// changes nothing), so a retried or repeated Compact is harmless. It goes
// shard after shard, each one routed to its leader with the usual
// retries; an error leaves the shards before it compacted. Errors as for
// Get, *FutureRevisionError for a rev above every revision handed out,
// and InvalidArgument for rev 0 or an end that sorts before start.
func (c *Client) Compact(ctx context.Context, start, end []byte, rev uint64) error {
	_, err := c.CompactTo(ctx, start, end, rev)
	return err
}

// CompactTo is Compact returning the highest compaction revision of the
// shards after it: above rev when some shard had been compacted past rev
// already (by an earlier Compact, or by pruning past its retention).
func (c *Client) CompactTo(ctx context.Context, start, end []byte, rev uint64) (uint64, error) {
	ctx, cancel := c.callContext(ctx)
	defer cancel()
	if rev == 0 {
		return 0, status.Error(codes.InvalidArgument, "router: compact: revision 0")
	}
	if len(end) != 0 && bytes.Compare(start, end) >= 0 {
		return 0, status.Errorf(codes.InvalidArgument, "router: compact: end %s does not sort after start %s", keyfmt.Quote(end), keyfmt.Quote(start))
	}
	var highest uint64
	cur := start
	for {
		var used *route
		var resp *pb.CompactResponse
		err := c.do(ctx, &call{op: "compact", key: cur, consistency: Linearizable,
			send: func(ctx context.Context, kv pb.KVClient, r *route, hdr *pb.RequestHeader) error {
				used = r
				var err error
				resp, err = kv.Compact(ctx, &pb.CompactRequest{Header: hdr, Revision: rev})
				return err
			}})
		if err != nil {
			return highest, err
		}
		highest = max(highest, resp.GetCompactRevision())
		if used.endsAtOrAfter(end) {
			return highest, nil
		}
		cur = used.end()
	}
}
