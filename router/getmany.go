package router

import (
	"context"
	"fmt"
	"sync"

	"github.com/flotilla-kv/flotilla/internal/keyfmt"
)

// getManyParallel bounds the Gets one GetMany has in flight.
const getManyParallel = 256

// GetMany reads keys, each as GetAt(key, 0) would, and returns one result
// per key in the order of keys (a key given twice is read twice). The
// reads go concurrently, at most 256 at a time; those to one node share
// KV.Multi calls through its coalescer (see Coalescing in the package
// documentation), so a GetMany of n keys over k nodes costs about k round
// trips under load rather than n. Each key is read on its own, at its
// shard's revision: the results are not one snapshot (compare
// GetResult.Revision; ScanAt reads one). If any read fails, GetMany
// returns no results and the error of the first failed key in the order
// of keys (each read runs to its end; one failing does not cancel the
// others). Errors as for GetAt. The caller owns the results.
func (c *Client) GetMany(ctx context.Context, keys [][]byte, opts ...ReadOption) ([]GetResult, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	ctx, cancel := c.callContext(ctx)
	defer cancel()
	res := make([]GetResult, len(keys))
	errs := make([]error, len(keys))
	sem := make(chan struct{}, getManyParallel)
	var wg sync.WaitGroup
	for i, k := range keys {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			errs[i] = fmt.Errorf("router: get %s: %w", keyfmt.Quote(k), ctx.Err())
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			res[i], errs[i] = c.GetAt(ctx, k, 0, opts...)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return res, nil
}
