package etcdapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/flotilla-kv/flotilla/internal/poll"
	"github.com/flotilla-kv/flotilla/internal/syskeys"
	"github.com/flotilla-kv/flotilla/router"
)

// keysOf returns the keys of kvs, joined by commas.
func keysOf(kvs []*mvccpb.KeyValue) string {
	ks := make([]string, len(kvs))
	for i, kv := range kvs {
		ks[i] = string(kv.Key)
	}
	return strings.Join(ks, ",")
}

// TestRange runs etcd Range requests through clientv3 against a real
// fleet of four shards (split at first bytes 0x40, 0x80 and 0xc0), with
// data written through the router.
func TestRange(t *testing.T) {
	a := startAPI(t)
	ctx := testCtx(t)
	put := func(k, v string) uint64 {
		t.Helper()
		w, err := a.router.PutRev(ctx, []byte(k), []byte(v))
		if err != nil {
			t.Fatalf("put %q: %v", k, err)
		}
		return w.Revision
	}
	revA := put("r/a", "3")
	revB1 := put("r/b", "b-one")
	revC := put("r/c", "1")
	revB2 := put("r/b", "b-two") // r/b: version 2
	revD := put("r/d", "2")
	// One key in each shard; "r/..." is in the second (0x72).
	for _, k := range []string{"\x30x", "\x50x", "\x90x", "\xd0x"} {
		put(k, "spread")
	}

	t.Run("one key", func(t *testing.T) {
		resp, err := a.client.Get(ctx, "r/b")
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) != 1 || resp.Count != 1 || resp.More {
			t.Fatalf("got %d kvs, count %d, more %v; want one", len(resp.Kvs), resp.Count, resp.More)
		}
		kv := resp.Kvs[0]
		if string(kv.Value) != "b-two" || kv.Version != 2 || kv.CreateRevision != int64(revB1) || kv.ModRevision != int64(revB2) || kv.Lease != 0 {
			t.Fatalf("r/b = %+v; want b-two, version 2, create %d, mod %d", kv, revB1, revB2)
		}
		if resp.Header.Revision < int64(revB2) || resp.Header.ClusterId != 0x10 || resp.Header.MemberId != 1 {
			t.Fatalf("header %+v: want revision >= %d, cluster 0x10, member 1", resp.Header, revB2)
		}
		resp, err = a.client.Get(ctx, "r/none")
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) != 0 || resp.Count != 0 || resp.Header.Revision == 0 {
			t.Fatalf("absent key: %d kvs, count %d, header %+v; want none at a revision", len(resp.Kvs), resp.Count, resp.Header)
		}
	})

	t.Run("prefix", func(t *testing.T) {
		resp, err := a.client.Get(ctx, "r/", clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		if got := keysOf(resp.Kvs); got != "r/a,r/b,r/c,r/d" || resp.Count != 4 || resp.More {
			t.Fatalf("prefix r/: %s, count %d, more %v", got, resp.Count, resp.More)
		}
		if string(resp.Kvs[2].Value) != "1" {
			t.Fatalf("r/c = %q, want 1", resp.Kvs[2].Value)
		}
	})

	t.Run("from key across shards", func(t *testing.T) {
		resp, err := a.client.Get(ctx, "r/c", clientv3.WithFromKey())
		if err != nil {
			t.Fatal(err)
		}
		if got := keysOf(resp.Kvs); got != "r/c,r/d,\x90x,\xd0x" || resp.Count != 4 {
			t.Fatalf("from r/c: %q, count %d", got, resp.Count)
		}
	})

	t.Run("all keys", func(t *testing.T) {
		resp, err := a.client.Get(ctx, "", clientv3.WithFromKey())
		if err != nil {
			t.Fatal(err)
		}
		if got := keysOf(resp.Kvs); got != "\x30x,\x50x,r/a,r/b,r/c,r/d,\x90x,\xd0x" || resp.Count != 8 {
			t.Fatalf("all keys: %q, count %d", got, resp.Count)
		}
		// The snapshot the header names gives the same answer when read at it.
		again, err := a.client.Get(ctx, "", clientv3.WithFromKey(), clientv3.WithRev(resp.Header.Revision))
		if err != nil {
			t.Fatal(err)
		}
		if keysOf(again.Kvs) != keysOf(resp.Kvs) || again.Header.Revision != resp.Header.Revision {
			t.Fatalf("read again at %d: %q at %d", resp.Header.Revision, keysOf(again.Kvs), again.Header.Revision)
		}
	})

	t.Run("range end", func(t *testing.T) {
		resp, err := a.client.Get(ctx, "\x30", clientv3.WithRange("\xc0"))
		if err != nil {
			t.Fatal(err)
		}
		if got := keysOf(resp.Kvs); got != "\x30x,\x50x,r/a,r/b,r/c,r/d,\x90x" {
			t.Fatalf("[0x30, 0xc0): %q", got)
		}
		resp, err = a.client.Get(ctx, "r/c", clientv3.WithRange("r/a"))
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) != 0 || resp.Count != 0 || resp.Header.Revision == 0 {
			t.Fatalf("end before key: %q, count %d, header %+v; want nothing at a revision", keysOf(resp.Kvs), resp.Count, resp.Header)
		}
	})

	t.Run("limit more count", func(t *testing.T) {
		resp, err := a.client.Get(ctx, "r/", clientv3.WithPrefix(), clientv3.WithLimit(2))
		if err != nil {
			t.Fatal(err)
		}
		if got := keysOf(resp.Kvs); got != "r/a,r/b" || !resp.More || resp.Count != 4 {
			t.Fatalf("limit 2: %s, more %v, count %d; want r/a,r/b, more, count 4", got, resp.More, resp.Count)
		}
		resp, err = a.client.Get(ctx, "r/", clientv3.WithPrefix(), clientv3.WithLimit(4))
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) != 4 || resp.More || resp.Count != 4 {
			t.Fatalf("limit 4: %d kvs, more %v, count %d; want 4, no more, count 4", len(resp.Kvs), resp.More, resp.Count)
		}
	})

	t.Run("count only", func(t *testing.T) {
		resp, err := a.client.Get(ctx, "r/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) != 0 || resp.Count != 4 || resp.More {
			t.Fatalf("count only: %d kvs, count %d, more %v; want none, 4, false", len(resp.Kvs), resp.Count, resp.More)
		}
	})

	t.Run("keys only", func(t *testing.T) {
		resp, err := a.client.Get(ctx, "r/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil {
			t.Fatal(err)
		}
		if got := keysOf(resp.Kvs); got != "r/a,r/b,r/c,r/d" {
			t.Fatalf("keys only: %s", got)
		}
		for _, kv := range resp.Kvs {
			if len(kv.Value) != 0 || kv.ModRevision == 0 {
				t.Fatalf("keys only: %q has value %q, mod revision %d; want no value, its revision", kv.Key, kv.Value, kv.ModRevision)
			}
		}
	})

	t.Run("sort", func(t *testing.T) {
		cases := []struct {
			target clientv3.SortTarget
			order  clientv3.SortOrder
			want   string
		}{
			{clientv3.SortByKey, clientv3.SortDescend, "r/d,r/c,r/b,r/a"},
			{clientv3.SortByValue, clientv3.SortAscend, "r/c,r/d,r/a,r/b"},
			{clientv3.SortByModRevision, clientv3.SortDescend, "r/d,r/b,r/c,r/a"},
			{clientv3.SortByCreateRevision, clientv3.SortAscend, "r/a,r/b,r/c,r/d"},
			{clientv3.SortByVersion, clientv3.SortDescend, "r/b,r/a,r/c,r/d"}, // ties in key order
		}
		for _, c := range cases {
			resp, err := a.client.Get(ctx, "r/", clientv3.WithPrefix(), clientv3.WithSort(c.target, c.order))
			if err != nil {
				t.Fatal(err)
			}
			if got := keysOf(resp.Kvs); got != c.want {
				t.Errorf("sort by %v %v: %s, want %s", c.target, c.order, got, c.want)
			}
		}
		// The limit applies after the sort.
		resp, err := a.client.Get(ctx, "r/", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByModRevision, clientv3.SortDescend), clientv3.WithLimit(1))
		if err != nil {
			t.Fatal(err)
		}
		if got := keysOf(resp.Kvs); got != "r/d" || !resp.More || resp.Count != 4 {
			t.Fatalf("newest one: %s, more %v, count %d", got, resp.More, resp.Count)
		}
	})

	t.Run("revision filters", func(t *testing.T) {
		resp, err := a.client.Get(ctx, "r/", clientv3.WithPrefix(), clientv3.WithMinModRev(int64(revC)))
		if err != nil {
			t.Fatal(err)
		}
		if got := keysOf(resp.Kvs); got != "r/b,r/c,r/d" || resp.Count != 4 {
			t.Fatalf("min mod %d: %s, count %d; want r/b,r/c,r/d with count 4 (before filters)", revC, got, resp.Count)
		}
		resp, err = a.client.Get(ctx, "r/", clientv3.WithPrefix(), clientv3.WithMaxCreateRev(int64(revB1)), clientv3.WithMinCreateRev(int64(revA)+1))
		if err != nil {
			t.Fatal(err)
		}
		if got := keysOf(resp.Kvs); got != "r/b" {
			t.Fatalf("create in (%d, %d]: %s, want r/b", revA, revB1, got)
		}
		resp, err = a.client.Get(ctx, "r/", clientv3.WithPrefix(), clientv3.WithMaxModRev(int64(revC)), clientv3.WithLimit(1))
		if err != nil {
			t.Fatal(err)
		}
		if got := keysOf(resp.Kvs); got != "r/a" || !resp.More {
			t.Fatalf("max mod %d, limit 1: %s, more %v; want r/a and more (r/c)", revC, got, resp.More)
		}
	})

	t.Run("at a revision", func(t *testing.T) {
		resp, err := a.client.Get(ctx, "r/b", clientv3.WithRev(int64(revC)))
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "b-one" || resp.Kvs[0].Version != 1 || resp.Header.Revision != int64(revC) {
			t.Fatalf("r/b at %d: %+v, header %+v; want b-one, version 1, at %d", revC, resp.Kvs, resp.Header, revC)
		}
		resp, err = a.client.Get(ctx, "r/", clientv3.WithPrefix(), clientv3.WithRev(int64(revD)-1))
		if err != nil {
			t.Fatal(err)
		}
		if got := keysOf(resp.Kvs); got != "r/a,r/b,r/c" || resp.Count != 3 || resp.Header.Revision != int64(revD)-1 {
			t.Fatalf("r/ before r/d: %s, count %d, header %d", got, resp.Count, resp.Header.Revision)
		}
	})

	t.Run("future revision", func(t *testing.T) {
		now, err := a.client.Get(ctx, "r/a")
		if err != nil {
			t.Fatal(err)
		}
		future := now.Header.Revision + 1<<40 // about an hour of oracle time ahead
		if _, err := a.client.Get(ctx, "r/a", clientv3.WithRev(future)); !errors.Is(err, rpctypes.ErrFutureRev) {
			t.Fatalf("get at future revision %d: %v, want %v", future, err, rpctypes.ErrFutureRev)
		}
		if _, err := a.client.Get(ctx, "r/", clientv3.WithPrefix(), clientv3.WithRev(future)); !errors.Is(err, rpctypes.ErrFutureRev) {
			t.Fatalf("range at future revision %d: %v, want %v", future, err, rpctypes.ErrFutureRev)
		}
	})

	t.Run("serializable", func(t *testing.T) {
		rev := put("r/s", "served anywhere")
		err := poll.Until(ctx, 10*time.Second, 20*time.Millisecond, func(ctx context.Context) error {
			resp, err := a.client.Get(ctx, "r/s", clientv3.WithSerializable())
			if err != nil {
				return err
			}
			if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "served anywhere" || resp.Kvs[0].ModRevision != int64(rev) {
				return fmt.Errorf("r/s read as %+v", resp.Kvs)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("a serializable read never saw r/s at %d: %v", rev, err)
		}
		resp, err := a.client.Get(ctx, "r/", clientv3.WithPrefix(), clientv3.WithSerializable(), clientv3.WithRev(int64(revD)))
		if err != nil {
			t.Fatal(err)
		}
		if got := keysOf(resp.Kvs); got != "r/a,r/b,r/c,r/d" {
			t.Fatalf("serializable at %d: %s", revD, got)
		}
	})

	t.Run("errors", func(t *testing.T) {
		if _, err := a.client.KV.Do(ctx, clientv3.OpGet("")); !errors.Is(err, rpctypes.ErrEmptyKey) {
			t.Fatalf("empty key: %v, want %v", err, rpctypes.ErrEmptyKey)
		}
		kv := pb.NewKVClient(a.client.ActiveConnection())
		_, err := kv.Range(ctx, &pb.RangeRequest{Key: []byte("r/a"), SortOrder: 7})
		if err == nil || err.Error() != rpctypes.ErrGRPCInvalidSortOption.Error() {
			t.Fatalf("bad sort order: %v, want %v", err, rpctypes.ErrGRPCInvalidSortOption)
		}
	})

	// Last: compaction makes older revisions unreadable.
	t.Run("compacted", func(t *testing.T) {
		old := put("\x20cmp", "v1")
		cur := put("\x20cmp", "v2")
		if err := a.router.Compact(ctx, []byte("\x20"), []byte("\x21"), cur); err != nil {
			t.Fatal(err)
		}
		if _, err := a.client.Get(ctx, "\x20cmp", clientv3.WithRev(int64(old))); !errors.Is(err, rpctypes.ErrCompacted) {
			t.Fatalf("get at compacted revision %d: %v, want %v", old, err, rpctypes.ErrCompacted)
		}
		if _, err := a.client.Get(ctx, "\x20", clientv3.WithFromKey(), clientv3.WithRev(int64(old))); !errors.Is(err, rpctypes.ErrCompacted) {
			t.Fatalf("range at compacted revision %d: %v, want %v", old, err, rpctypes.ErrCompacted)
		}
		resp, err := a.client.Get(ctx, "\x20cmp", clientv3.WithRev(int64(cur)))
		if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v2" {
			t.Fatalf("get at the compaction revision %d: %v %+v; want v2", cur, err, resp)
		}
	})
}

// TestRangeLimitsAcrossShards: over a span of 60 keys in four shards, a
// Range with a limit answers the first limit keys in key order, count 60
// and more exactly when keys are left (keys_only and count_only too, and
// with sorts and filters, which read the whole span); a list paginated in
// pages of 7 at the first page's revision sees every key once, each page
// counting the keys from its start at that revision, while a writer adds
// keys to the span that a Range of the latest state then counts.
func TestRangeLimitsAcrossShards(t *testing.T) {
	a := startAPI(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	var want []string
	firsts := []byte{0x30, 0x50, 0x90, 0xd0} // one in each shard
	for i := range 60 {
		k := fmt.Sprintf("%c/%02d", firsts[i%4], i/4)
		if err := a.router.Put(ctx, []byte(k), []byte("value of "+k)); err != nil {
			t.Fatalf("put %q: %v", k, err)
		}
		want = append(want, k)
	}
	slices.Sort(want)
	const from, to = "\x30", "\xe0"

	for _, limit := range []int64{1, 7, 15, 59, 60, 61, 1000} {
		n := min(int(limit), 60)
		more := limit < 60
		resp, err := a.client.Get(ctx, from, clientv3.WithRange(to), clientv3.WithLimit(limit))
		if err != nil {
			t.Fatal(err)
		}
		if got := keysOf(resp.Kvs); got != strings.Join(want[:n], ",") || resp.Count != 60 || resp.More != more {
			t.Fatalf("limit %d: %q, count %d, more %v; want the first %d keys, count 60, more %v", limit, got, resp.Count, resp.More, n, more)
		}
		for _, kv := range resp.Kvs {
			if string(kv.Value) != "value of "+string(kv.Key) || kv.ModRevision == 0 || kv.Version != 1 {
				t.Fatalf("limit %d: %+v", limit, kv)
			}
		}
		resp, err = a.client.Get(ctx, from, clientv3.WithRange(to), clientv3.WithLimit(limit), clientv3.WithKeysOnly())
		if err != nil {
			t.Fatal(err)
		}
		if got := keysOf(resp.Kvs); got != strings.Join(want[:n], ",") || resp.Count != 60 || resp.More != more {
			t.Fatalf("keys only, limit %d: %q, count %d, more %v", limit, got, resp.Count, resp.More)
		}
		for _, kv := range resp.Kvs {
			if len(kv.Value) != 0 || kv.ModRevision == 0 {
				t.Fatalf("keys only, limit %d: %+v", limit, kv)
			}
		}
		resp, err = a.client.Get(ctx, from, clientv3.WithRange(to), clientv3.WithLimit(limit), clientv3.WithCountOnly())
		if err != nil || len(resp.Kvs) != 0 || resp.Count != 60 || resp.More {
			t.Fatalf("count only, limit %d: %v, %d kvs, count %d, more %v", limit, err, len(resp.Kvs), resp.Count, resp.More)
		}
		resp, err = a.client.Get(ctx, from, clientv3.WithRange(to), clientv3.WithLimit(limit), clientv3.WithSerializable())
		if err != nil || keysOf(resp.Kvs) != strings.Join(want[:n], ",") || resp.Count != 60 || resp.More != more {
			t.Fatalf("serializable, limit %d: %v, %d kvs, count %d, more %v", limit, err, len(resp.Kvs), resp.Count, resp.More)
		}
	}
	// A sort other than key order, and a filter, with a limit: count is
	// still every key of the range, more whether the limit cut.
	resp, err := a.client.Get(ctx, from, clientv3.WithRange(to), clientv3.WithLimit(5), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend))
	desc := slices.Clone(want[55:])
	slices.Reverse(desc)
	if err != nil || keysOf(resp.Kvs) != strings.Join(desc, ",") || resp.Count != 60 || !resp.More {
		t.Fatalf("descending, limit 5: %v, %q, count %d, more %v", err, keysOf(resp.Kvs), resp.Count, resp.More)
	}
	all, err := a.client.Get(ctx, from, clientv3.WithRange(to), clientv3.WithSort(clientv3.SortByModRevision, clientv3.SortDescend), clientv3.WithLimit(1))
	if err != nil || len(all.Kvs) != 1 || all.Count != 60 || !all.More {
		t.Fatalf("newest key: %v, %+v", err, all)
	}
	newest := all.Kvs[0].ModRevision
	resp, err = a.client.Get(ctx, from, clientv3.WithRange(to), clientv3.WithMinModRev(newest), clientv3.WithLimit(5))
	if err != nil || len(resp.Kvs) != 1 || resp.Count != 60 || resp.More {
		t.Fatalf("min mod revision %d, limit 5: %v, %q, count %d, more %v; want one key, count 60", newest, err, keysOf(resp.Kvs), resp.Count, resp.More)
	}

	// Paginate at one revision while a writer adds keys to the span.
	stop := make(chan struct{})
	done := make(chan error, 1)
	var added atomic.Int64
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			k := fmt.Sprintf("%c/new%03d", firsts[i%4], i)
			if err := a.router.Put(ctx, []byte(k), []byte("new")); err != nil {
				done <- fmt.Errorf("writer: put %q: %w", k, err)
				return
			}
			added.Add(1)
		}
	}()
	defer func() {
		close(stop)
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	type page struct {
		from  string
		count int64
	}
	var (
		listed []string
		pages  []page
		rev    int64
	)
	key := from
	for p := 0; ; p++ {
		// Let the writer add keys between pages.
		before := added.Load()
		if err := poll.Until(ctx, 10*time.Second, 5*time.Millisecond, func(context.Context) error {
			if added.Load() == before {
				return errors.New("the writer added no key")
			}
			return nil
		}); err != nil {
			t.Fatalf("page %d: %v", p, err)
		}
		opts := []clientv3.OpOption{clientv3.WithRange(to), clientv3.WithLimit(7)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := a.client.Get(ctx, key, opts...)
		if err != nil {
			t.Fatal(err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		if resp.Header.Revision != rev {
			t.Fatalf("page %d read at %d, the list at %d", p, resp.Header.Revision, rev)
		}
		pages = append(pages, page{from: key, count: resp.Count})
		for _, kv := range resp.Kvs {
			listed = append(listed, string(kv.Key))
		}
		if resp.More != (resp.Count > 7) || (!resp.More && int64(len(resp.Kvs)) != resp.Count) {
			t.Fatalf("page %d from %q: %d kvs, count %d, more %v", p, key, len(resp.Kvs), resp.Count, resp.More)
		}
		if !resp.More {
			break
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	// The pages together are the span at rev, as one unlimited Range there.
	whole, err := a.client.Get(ctx, from, clientv3.WithRange(to), clientv3.WithRev(rev))
	if err != nil || keysOf(whole.Kvs) != strings.Join(listed, ",") || whole.Count != int64(len(listed)) {
		t.Fatalf("the list at %d: %d keys, the Range there: %d keys, count %d, %v", rev, len(listed), len(whole.Kvs), whole.Count, err)
	}
	if len(listed) <= 60 || len(pages) < 9 {
		t.Fatalf("the list at %d: %d keys in %d pages; want the 60 keys and some of the writer's", rev, len(listed), len(pages))
	}
	// Each page counted the keys of the span from its start at rev.
	for i, p := range pages {
		var left int64
		for _, k := range listed {
			if k >= p.from {
				left++
			}
		}
		if p.count != left {
			t.Fatalf("page %d from %q: count %d; at %d the span holds %d keys from there", i, p.from, p.count, rev, left)
		}
	}
	// The latest state counts the keys the writer added since.
	if err := poll.Until(ctx, 10*time.Second, 5*time.Millisecond, func(ctx context.Context) error {
		latest, err := a.client.Get(ctx, from, clientv3.WithRange(to), clientv3.WithCountOnly())
		if err != nil {
			return err
		}
		if latest.Count <= int64(len(listed)) {
			return fmt.Errorf("latest count %d, the list at %d had %d", latest.Count, rev, len(listed))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestShapeRange checks the shaping of a range's answer on its own, as
// Range and Txn's range operations use it.
func TestShapeRange(t *testing.T) {
	kvs := []router.KeyValue{
		{Key: []byte("a"), Value: []byte("z"), CreateRevision: 10, ModRevision: 40, Version: 3},
		{Key: []byte("b"), Value: []byte("x"), CreateRevision: 20, ModRevision: 20, Version: 1},
		{Key: []byte("c"), Value: []byte("y"), CreateRevision: 30, ModRevision: 50, Version: 3, Lease: 7},
		{Key: []byte("d"), Value: []byte("x"), CreateRevision: 35, ModRevision: 35, Version: 1},
	}
	cases := []struct {
		name  string
		req   *pb.RangeRequest
		want  string
		more  bool
		count int64
	}{
		{"all", &pb.RangeRequest{}, "a,b,c,d", false, 4},
		{"limit", &pb.RangeRequest{Limit: 3}, "a,b,c", true, 4},
		{"limit equal", &pb.RangeRequest{Limit: 4}, "a,b,c,d", false, 4},
		{"negative limit", &pb.RangeRequest{Limit: -1}, "a,b,c,d", false, 4},
		{"count only", &pb.RangeRequest{CountOnly: true, Limit: 1}, "", false, 4},
		{"target without order sorts ascending", &pb.RangeRequest{SortTarget: pb.RangeRequest_MOD}, "b,d,a,c", false, 4},
		{"key descending", &pb.RangeRequest{SortOrder: pb.RangeRequest_DESCEND}, "d,c,b,a", false, 4},
		{"value ascending, ties in key order", &pb.RangeRequest{SortTarget: pb.RangeRequest_VALUE, SortOrder: pb.RangeRequest_ASCEND}, "b,d,c,a", false, 4},
		{"version descending, ties in key order", &pb.RangeRequest{SortTarget: pb.RangeRequest_VERSION, SortOrder: pb.RangeRequest_DESCEND}, "a,c,b,d", false, 4},
		{"create descending, limit", &pb.RangeRequest{SortTarget: pb.RangeRequest_CREATE, SortOrder: pb.RangeRequest_DESCEND, Limit: 2}, "d,c", true, 4},
		{"min mod", &pb.RangeRequest{MinModRevision: 35}, "a,c,d", false, 4},
		{"max mod", &pb.RangeRequest{MaxModRevision: 35}, "b,d", false, 4},
		{"create window", &pb.RangeRequest{MinCreateRevision: 20, MaxCreateRevision: 30}, "b,c", false, 4},
		{"filter then limit", &pb.RangeRequest{MinModRevision: 35, Limit: 2}, "a,c", true, 4},
		{"filter to the limit", &pb.RangeRequest{MinModRevision: 40, Limit: 2}, "a,c", false, 4},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := shapeRange(c.req, kvs, 60)
			if got := keysOf(resp.Kvs); got != c.want || resp.More != c.more || resp.Count != c.count || resp.Header != nil {
				t.Fatalf("%s, more %v, count %d, header %v; want %s, more %v, count %d, no header", got, resp.More, resp.Count, resp.Header, c.want, c.more, c.count)
			}
		})
	}
	// Values, revisions and leases carry over; keys_only drops the values.
	resp := shapeRange(&pb.RangeRequest{}, kvs, 60)
	if c := resp.Kvs[2]; string(c.Value) != "y" || c.CreateRevision != 30 || c.ModRevision != 50 || c.Version != 3 || c.Lease != 7 {
		t.Fatalf("c = %+v", c)
	}
	resp = shapeRange(&pb.RangeRequest{KeysOnly: true}, kvs, 60)
	for _, kv := range resp.Kvs {
		if kv.Value != nil {
			t.Fatalf("keys only: %q has value %q", kv.Key, kv.Value)
		}
	}
	// The caller's slice is left as it was.
	shapeRange(&pb.RangeRequest{SortOrder: pb.RangeRequest_DESCEND}, kvs, 60)
	if string(kvs[0].Key) != "a" || string(kvs[3].Key) != "d" {
		t.Fatalf("shapeRange reordered its input: %q ... %q", kvs[0].Key, kvs[3].Key)
	}
}

// TestEtcdSpan checks how etcd's (key, range_end) becomes the router's
// span, the system span left out.
func TestEtcdSpan(t *testing.T) {
	sys := string(syskeys.SystemPrefix)
	cases := []struct {
		key, end      string
		start, toEnd  string
		single, empty bool
	}{
		{"a", "", "a", "", true, false},
		{"a", "\x00", "a", sys, false, false},
		{"\x00", "\x00", "\x00", sys, false, false},
		{"a", "b", "a", "b", false, false},
		{"b", "a", "b", "", false, true},
		{"a", "a", "a", "", false, true},
		{"a", "\xff\xff\xff", "a", sys, false, false},
		{sys + "lease/", "", sys + "lease/", "", false, true},
		{sys, "\x00", sys, "", false, true},
	}
	for _, c := range cases {
		start, end, single, empty := etcdSpan([]byte(c.key), []byte(c.end))
		if !bytes.Equal(start, []byte(c.start)) || string(end) != c.toEnd || single != c.single || empty != c.empty {
			t.Errorf("etcdSpan(%q, %q) = %q, %q, single %v, empty %v; want %q, %q, %v, %v",
				c.key, c.end, start, end, single, empty, c.start, c.toEnd, c.single, c.empty)
		}
	}

}

// BenchmarkRangePaginatedList lists 5,000 keys of 1 KiB values, spread
// over the four shards, the way Kubernetes lists: pages of 500 (limit),
// the first at the latest revision and the rest at its revision, each
// from just after the previous page's last key. One op is one whole
// list; pairs/op is what the pages returned (5,000), and B/op what this
// process (etcd client, Server, router) allocated for it, mostly the
// pairs it received from the nodes.
func BenchmarkRangePaginatedList(b *testing.B) {
	const keys, pageSize, valueBytes = 5000, 500, 1024
	a := startBenchAPI(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	firsts := []byte{0x30, 0x50, 0x90, 0xd0}
	work := make(chan int)
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			for i := range work {
				k := fmt.Sprintf("%c/list/%05d", firsts[i%4], i)
				if err := a.router.Put(ctx, []byte(k), bytes.Repeat([]byte{'v'}, valueBytes)); err != nil {
					errs <- fmt.Errorf("put %q: %w", k, err)
					return
				}
			}
			errs <- nil
		}()
	}
	for i := range keys {
		work <- i
	}
	close(work)
	for range 8 {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	var pairs int
	for range b.N {
		pairs = 0
		key, rev := "\x30", int64(0)
		for {
			opts := []clientv3.OpOption{clientv3.WithRange("\xe0"), clientv3.WithLimit(pageSize)}
			if rev != 0 {
				opts = append(opts, clientv3.WithRev(rev))
			}
			resp, err := a.client.Get(ctx, key, opts...)
			if err != nil {
				b.Fatal(err)
			}
			rev = resp.Header.Revision
			pairs += len(resp.Kvs)
			if !resp.More {
				break
			}
			key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
		}
		if pairs != keys {
			b.Fatalf("the list returned %d pairs, want %d", pairs, keys)
		}
	}
	b.ReportMetric(float64(pairs), "pairs/op")
}

// startBenchAPI is startAPI for a benchmark.
func startBenchAPI(b *testing.B) *testAPI { return startAPI(b) }
