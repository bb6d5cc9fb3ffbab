package router

import (
	"bytes"
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/internal/keyfmt"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// scanPageSize is the most pairs one Scan request asks a node for; the
// node caps its pages at the same size (rpc.DefaultScanLimit).
const scanPageSize = 1000

// countPageSize is the most keys one count_only Scan request asks a
// node to count; 0 leaves it to the node (rpc.DefaultCountLimit). Tests
// lower it to count in many pages.
var countPageSize = 0

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

// ScanKeysAt is ScanAt without the values: each pair carries its key,
// revisions, version and lease, and a nil Value. The nodes read the same
// versions as for ScanAt but neither copy nor send the values, so listing
// the keys of a span of large values costs about what its keys take.
// Everything else, the revision chosen with rev 0 and the errors, is as
// for ScanAt.
func (c *Client) ScanKeysAt(ctx context.Context, start, end []byte, limit int, rev uint64, opts ...ReadOption) (ScanResult, error) {
	kvs, seen, err := c.scanAs(ctx, start, end, limit, rev, true /* pin */, scanKeysOnly, opts)
	if err != nil {
		return ScanResult{}, err
	}
	return ScanResult{KVs: kvs, Revision: seen}, nil
}

// CountAt returns the number of keys of [start, end) (an empty end is
// +inf) as of one revision across every shard the range spans, and that
// revision: rev, or with rev 0 one chosen as ScanAt chooses it. It is
// the count ScanAt's len(KVs) would be, keys of ended leases left out as
// reads leave them out, but the nodes count where they read and return
// only the count, page after page (each up to rpc.DefaultCountLimit
// keys), all at that revision, so a count costs a walk over the range's
// versions on the nodes and no memory per key here. The shards of the
// range that the route cache knows are counted concurrently (at most
// countFanOut at once), each like a Scan of its part, healing splits and
// leader changes the same way. Errors as for ScanAt; with several shards,
// the first error one of them met.
func (c *Client) CountAt(ctx context.Context, start, end []byte, rev uint64, opts ...ReadOption) (int64, uint64, error) {
	ctx, cancel := c.callContext(ctx)
	defer cancel()
	parts := c.countParts(ctx, start, end)
	if len(parts) < 2 {
		return c.countPart(ctx, start, end, rev, opts)
	}
	if rev == 0 {
		// Across shards, read at a fresh revision, as pages does.
		var err error
		if rev, err = c.now(ctx); err != nil {
			return 0, 0, err
		}
	}
	counts := make([]int64, len(parts))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(countFanOut)
	for i, p := range parts {
		g.Go(func() error {
			n, _, err := c.countPart(gctx, p.start, p.end, rev, opts)
			counts[i] = n
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return 0, 0, err
	}
	var n int64
	for _, k := range counts {
		n += k
	}
	return n, rev, nil
}

// countFanOut is how many shards one CountAt counts at once.
const countFanOut = 8

// span is a range [start, end) of keys (an empty end is +inf).
type span struct{ start, end []byte }

// countParts cuts [start, end) at the boundaries of the cached routes
// that cover it, from start on, loading them if the cache lacks start's;
// the last part runs from the first boundary it does not know to end. It
// returns nil for a range CountAt does not cut (empty or inverted, which
// countPart answers).
func (c *Client) countParts(ctx context.Context, start, end []byte) []span {
	end = clipSystem(start, end)
	if len(end) != 0 && bytes.Compare(start, end) >= 0 {
		return nil
	}
	if _, ok := c.cache.lookup(start); !ok {
		c.prefetchSpan(ctx, start, end, scanPrefetchRoutes)
	}
	var parts []span
	for cur := start; ; {
		r, ok := c.cache.lookup(cur)
		if !ok || r.endsAtOrAfter(end) || bytes.Compare(r.end(), cur) <= 0 {
			return append(parts, span{cur, end})
		}
		parts = append(parts, span{cur, r.end()})
		cur = r.end()
	}
}

// countPart counts [start, end) at rev (0: as pages chooses), page after
// page and shard after shard.
func (c *Client) countPart(ctx context.Context, start, end []byte, rev uint64, opts []ReadOption) (int64, uint64, error) {
	var n int64
	seen, err := c.pages(ctx, start, end, 0 /* limit: all */, rev, true /* pin */, scanCountOnly, opts,
		func(resp *pb.ScanResponse) int {
			// A node that does not count answers pairs: count them.
			n += resp.GetCount() + int64(len(resp.GetKvs()))
			return 0
		})
	if err != nil {
		return 0, 0, err
	}
	return n, seen, nil
}

// scanMode is what each page of a scan asks the nodes for.
type scanMode int

const (
	scanPairs     scanMode = iota // keys and values
	scanKeysOnly                  // keys without values
	scanCountOnly                 // only the count of keys
)

// scan reads [start, end) page by page at rev (0: latest). With pin, the
// revision the first page saw becomes rev for the rest. It returns the
// pairs and the revision of the last page.
func (c *Client) scan(ctx context.Context, start, end []byte, limit int, rev uint64, pin bool, opts []ReadOption) ([]KeyValue, uint64, error) {
	return c.scanAs(ctx, start, end, limit, rev, pin, scanPairs, opts)
}

// scanAs is scan asking each page for what mode says (pairs or keys).
func (c *Client) scanAs(ctx context.Context, start, end []byte, limit int, rev uint64, pin bool, mode scanMode, opts []ReadOption) ([]KeyValue, uint64, error) {
	var out []KeyValue
	seen, err := c.pages(ctx, start, end, limit, rev, pin, mode, opts, func(resp *pb.ScanResponse) int {
		for _, kv := range resp.GetKvs() {
			if limit > 0 && len(out) == limit {
				break
			}
			kv := kvFromProto(kv)
			if mode == scanKeysOnly {
				kv.Value = nil
			}
			out = append(out, kv)
		}
		return len(out)
	})
	if err != nil {
		return nil, 0, err
	}
	return out, seen, nil
}

// pages sends the Scan requests of a scan of [start, end) at rev (0:
// latest) and hands each response to take, which returns how many pairs
// the scan holds so far; it stops when that reaches limit (limit <= 0: no
// limit), or at end. With pin, the revision the first page saw becomes
// rev for the rest. It returns the revision of the last page.
func (c *Client) pages(ctx context.Context, start, end []byte, limit int, rev uint64, pin bool, mode scanMode, opts []ReadOption, take func(*pb.ScanResponse) int) (uint64, error) {
	ctx, cancel := c.callContext(ctx)
	defer cancel()
	o := c.readOptions(opts)
	end = clipSystem(start, end)
	if len(end) != 0 {
		switch order := bytes.Compare(start, end); {
		case order > 0:
			return 0, status.Errorf(codes.InvalidArgument, "router: scan: end %s sorts before start %s", keyfmt.Quote(end), keyfmt.Quote(start))
		case order == 0:
			return rev, nil // the empty range [start, start): no revision read
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
			return 0, err
		}
	}
	var (
		seen uint64
		got  int
	)
	cur := start
	for {
		page := scanPageSize
		switch {
		case mode == scanCountOnly:
			page = countPageSize
		case limit > 0:
			page = min(page, limit-got)
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
				resp, err = kv.Scan(ctx, &pb.ScanRequest{Header: hdr, Start: cur, End: pageEnd, Limit: uint32(page), Revision: rev,
					KeysOnly: mode == scanKeysOnly, CountOnly: mode == scanCountOnly})
				used = r
				return err
			}})
		if err != nil {
			return 0, err
		}
		seen = resp.GetRevision()
		if pin && rev == 0 {
			if seen == 0 {
				return 0, fmt.Errorf("router: scan: shard %d answered a scan without its revision", used.id())
			}
			rev = seen
		}
		got = take(resp)
		switch {
		case limit > 0 && got >= limit:
			return seen, nil
		case resp.GetMore():
			next := resp.GetResumeKey()
			if bytes.Compare(next, cur) <= 0 {
				return 0, fmt.Errorf("router: scan: shard %d returned resume key %s, not after %s", used.id(), keyfmt.Quote(next), keyfmt.Quote(cur))
			}
			cur = next
		case used.endsAtOrAfter(end):
			return seen, nil
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
