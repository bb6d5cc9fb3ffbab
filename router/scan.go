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
// is consistent on its own (ScanAt reads one snapshot). Each pair carries
// its revisions. The caller owns the result. An end that sorts before
// start is refused with an InvalidArgument status; start == end is the
// empty range. Errors as for Get.
func (c *Client) Scan(ctx context.Context, start, end []byte, limit int, opts ...ReadOption) ([]KeyValue, error) {
	kvs, _, err := c.scan(ctx, start, end, limit, 0, false /* pin */, opts)
	return kvs, err
}

// ScanAt is Scan reading one consistent snapshot of [start, end) across
// every shard and page: at revision rev, or with rev 0 at a revision that
// sees every write acknowledged before the call began (a range within one
// shard: the revision its first page saw, the shard's resolved revision;
// a range across shards: a fresh revision from the oracle, as Now, which
// each shard resolves before it is read, at about a write's cost per
// shard), which every page and shard then reads at. The result names
// that revision. Reads at a revision wait until the shard resolved
// it (nothing at or below it can still commit there), so the pages agree.
// The consistency only chooses where the pages are sent. Errors as for
// Scan, and *CompactedError or *FutureRevisionError (see GetAt); a scan
// that takes longer than the compaction horizon can fail with
// *CompactedError midway.
func (c *Client) ScanAt(ctx context.Context, start, end []byte, limit int, rev uint64, opts ...ReadOption) (ScanResult, error) {
	kvs, seen, err := c.scan(ctx, start, end, limit, rev, true /* pin */, opts)
	if err != nil {
		return ScanResult{}, err
	}
	return ScanResult{KVs: kvs, Revision: seen}, nil
}

// scan reads [start, end) page by page at rev (0: latest). With pin, the
// revision the first page saw becomes rev for the rest. It returns the
// pairs and the revision of the last page.
func (c *Client) scan(ctx context.Context, start, end []byte, limit int, rev uint64, pin bool, opts []ReadOption) ([]KeyValue, uint64, error) {
	ctx, cancel := c.callContext(ctx)
	defer cancel()
	o := c.readOptions(opts)
	end = clipSystem(start, end)
	if len(end) != 0 {
		switch order := bytes.Compare(start, end); {
		case order > 0:
			return nil, 0, status.Errorf(codes.InvalidArgument, "router: scan: end %s sorts before start %s", keyfmt.Quote(end), keyfmt.Quote(start))
		case order == 0:
			return nil, rev, nil // the empty range [start, start): no revision read
		}
	}
	if _, ok := c.cache.lookup(start); !ok {
		c.prefetchSpan(ctx, start, end, scanPrefetchRoutes)
	}
	if r, ok := c.cache.lookup(start); pin && rev == 0 && (!ok || !r.endsAtOrAfter(end)) {
		// Across shards, the first shard's resolved revision can be
		// below writes the others acknowledged: read at a fresh one.
		var err error
		if rev, err = c.now(ctx); err != nil {
			return nil, 0, err
		}
	}
	var out []KeyValue
	var seen uint64
	cur := start
	for {
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
				resp, err = kv.Scan(ctx, &pb.ScanRequest{Header: hdr, Start: cur, End: pageEnd, Limit: uint32(page), Revision: rev})
				used = r
				return err
			}})
		if err != nil {
			return nil, 0, err
		}
		seen = resp.GetRevision()
		if pin && rev == 0 {
			if seen == 0 {
				return nil, 0, fmt.Errorf("router: scan: shard %d answered a scan without its revision", used.id())
			}
			rev = seen
		}
		for _, kv := range resp.GetKvs() {
			if limit > 0 && len(out) == limit {
				break
			}
			out = append(out, kvFromProto(kv))
		}
		switch {
		case limit > 0 && len(out) >= limit:
			return out, seen, nil
		case resp.GetMore():
			next := resp.GetResumeKey()
			if bytes.Compare(next, cur) <= 0 {
				return nil, 0, fmt.Errorf("router: scan: shard %d returned resume key %s, not after %s", used.id(), keyfmt.Quote(next), keyfmt.Quote(cur))
			}
			cur = next
		case used.endsAtOrAfter(end):
			return out, seen, nil
		default:
			cur = used.end()
		}
	}
}

// Now returns a fresh revision from the fleet's oracle, above the
// revision of every write acknowledged before the call, on any shard: a
// read at it (GetAt, ScanAt) sees every such write, and a Watch from the
// next revision misses none after them. Any node answers.
func (c *Client) Now(ctx context.Context) (uint64, error) {
	ctx, cancel := c.callContext(ctx)
	defer cancel()
	return c.now(ctx)
}

func (c *Client) now(ctx context.Context) (uint64, error) {
	var resp *pb.NowResponse
	err := c.do(ctx, &call{op: "now", key: []byte{}, consistency: Stale,
		send: func(ctx context.Context, kv pb.KVClient, _ *route, _ *pb.RequestHeader) error {
			var err error
			resp, err = kv.Now(ctx, &pb.NowRequest{})
			return err
		}})
	if err != nil {
		return 0, err
	}
	if resp.GetRevision() == 0 {
		return 0, fmt.Errorf("router: now: a node answered revision 0")
	}
	return resp.GetRevision(), nil
}
