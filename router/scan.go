package router

import (
	"bytes"
	"context"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/internal/keyfmt"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// scanPageSize is the most pairs one Scan request asks a node for; the
// node caps its pages at the same size (rpc.DefaultScanLimit).
const scanPageSize = 1000

// scanPrefetchRoutes is how many routes a Scan that misses the cache asks
// for at once.
const scanPrefetchRoutes = 64

// Scan returns the pairs of [start, end) in key order (an empty end is
// +inf), at most limit of them (limit <= 0: all), read at the consistency
// of Config.ReadConsistency or WithConsistency. It reads shard after shard,
// page by page (following ScanResponse.more and resume_key within a shard,
// then the next shard's route); each page is one routed request with its
// own retries, so a split or a leader change in the middle of a Scan heals
// like any request. The result is not one snapshot across pages: each page
// is consistent on its own. The caller owns the result. An end that sorts
// before start is refused with an InvalidArgument status; start == end is
// the empty range. Errors as for Get.
func (c *Client) Scan(ctx context.Context, start, end []byte, limit int, opts ...ReadOption) ([]KeyValue, error) {
	ctx, cancel := c.callContext(ctx)
	defer cancel()
	o := c.readOptions(opts)
	if len(end) != 0 {
		switch order := bytes.Compare(start, end); {
		case order > 0:
			return nil, status.Errorf(codes.InvalidArgument, "router: scan: end %s sorts before start %s", keyfmt.Quote(end), keyfmt.Quote(start))
		case order == 0:
			return nil, nil // the empty range [start, start)
		}
	}
	if _, ok := c.cache.lookup(start); !ok {
		c.prefetchSpan(ctx, start, end, scanPrefetchRoutes)
	}
	var out []KeyValue
	cur := start
	for limit <= 0 || len(out) < limit {
		page := scanPageSize
		if limit > 0 {
			page = min(page, limit-len(out))
		}
		var (
			resp *pb.ScanResponse
			used *route
		)
		err := c.do(ctx, &call{op: "scan", key: cur, consistency: o.consistency,
			send: func(ctx context.Context, kv pb.KVClient, r *route, hdr *pb.RequestHeader) error {
				pageEnd := end
				if len(r.end()) != 0 && (len(end) == 0 || bytes.Compare(r.end(), end) < 0) {
					pageEnd = r.end()
				}
				var err error
				resp, err = kv.Scan(ctx, &pb.ScanRequest{Header: hdr, Start: cur, End: pageEnd, Limit: uint32(page)})
				used = r
				return err
			}})
		if err != nil {
			return nil, err
		}
		for _, kv := range resp.GetKvs() {
			if limit > 0 && len(out) == limit {
				break
			}
			v := kv.GetValue()
			if v == nil {
				v = []byte{}
			}
			out = append(out, KeyValue{Key: kv.GetKey(), Value: v})
		}
		switch {
		case resp.GetMore():
			next := resp.GetResumeKey()
			if bytes.Compare(next, cur) <= 0 {
				return nil, fmt.Errorf("router: scan: shard %d returned resume key %s, not after %s", used.id(), keyfmt.Quote(next), keyfmt.Quote(cur))
			}
			cur = next
		case used.endsAtOrAfter(end):
			return out, nil
		default:
			cur = used.end()
		}
	}
	return out, nil
}
