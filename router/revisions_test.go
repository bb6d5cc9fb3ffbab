package router

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// Unit tests of revisions on results, reads at a revision, ScanAt and
// GetMany, against the fake nodes of fake_test.go (which keep every
// version of every key).

func TestWritesAndReadsCarryRevisions(t *testing.T) {
	n := newFakeNode(t, 1)
	c := newTestClient(t, newStaticSource(fakeRoute(1, "", "", 1, n)), nil)
	ctx := context.Background()
	k := []byte("k")
	w1, err := c.PutRev(ctx, k, []byte("v1"))
	if err != nil || w1.Revision != 1 {
		t.Fatalf("PutRev: %+v %v, want revision 1", w1, err)
	}
	w2, err := c.BatchRev(ctx, []Op{{Key: k, Value: []byte("v2")}, {Key: []byte("k2"), Value: []byte("x")}})
	if err != nil || w2.Revision != 2 {
		t.Fatalf("BatchRev: %+v %v, want revision 2", w2, err)
	}
	got, err := c.GetAt(ctx, k, 0)
	want := GetResult{KV: KeyValue{Key: k, Value: []byte("v2"), CreateRevision: 1, ModRevision: 2, Version: 2}, Found: true, Revision: 2}
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("GetAt latest: %+v %v\nwant %+v", got, err, want)
	}
	got, err = c.GetAt(ctx, k, 1)
	want = GetResult{KV: KeyValue{Key: k, Value: []byte("v1"), CreateRevision: 1, ModRevision: 1, Version: 1}, Found: true, Revision: 1}
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("GetAt 1: %+v %v\nwant %+v", got, err, want)
	}
	if reqs := n.requests(); reqs[len(reqs)-1].rev != 1 {
		t.Errorf("GetAt 1 sent revision %d", reqs[len(reqs)-1].rev)
	}
	d, err := c.DeleteRev(ctx, k)
	if err != nil || d.Revision != 3 {
		t.Fatalf("DeleteRev: %+v %v, want revision 3", d, err)
	}
	if got, err := c.GetAt(ctx, k, 0); err != nil || got.Found || got.Revision != 3 || string(got.KV.Key) != "k" {
		t.Fatalf("GetAt after delete: %+v %v", got, err)
	}
	if got, err := c.GetAt(ctx, k, 2); err != nil || !got.Found || string(got.KV.Value) != "v2" {
		t.Fatalf("GetAt 2 after delete: %+v %v", got, err)
	}
	// Get and Scan keep their signatures and fill the revisions.
	if v, ok, err := c.Get(ctx, []byte("k2")); err != nil || !ok || string(v) != "x" {
		t.Fatalf("Get: %q %v %v", v, ok, err)
	}
	kvs, err := c.Scan(ctx, nil, nil, 0)
	if err != nil || len(kvs) != 1 || kvs[0].ModRevision != 2 || kvs[0].CreateRevision != 2 || kvs[0].Version != 1 {
		t.Fatalf("Scan: %+v %v", kvs, err)
	}
}

func TestRevisionOutOfRangeIsFinalAndTyped(t *testing.T) {
	n := newFakeNode(t, 1)
	c := newTestClient(t, newStaticSource(fakeRoute(1, "", "", 1, n)), nil)
	ctx := context.Background()
	for _, tc := range []struct {
		detail *pb.Compacted
		future *pb.FutureRevision
	}{
		{detail: &pb.Compacted{ShardId: 1, CompactRevision: 50}},
		{future: &pb.FutureRevision{ShardId: 1, Revision: 900, CurrentRevision: 60}},
	} {
		before := n.calls.Load()
		n.hook = func(string, *pb.RequestHeader) error {
			if tc.detail != nil {
				return withDetail(codes.OutOfRange, tc.detail)
			}
			return withDetail(codes.OutOfRange, tc.future)
		}
		_, getErr := c.GetAt(ctx, []byte("k"), 10)
		_, scanErr := c.ScanAt(ctx, []byte("a"), []byte("z"), 0, 10)
		for _, err := range []error{getErr, scanErr} {
			if status.Code(err) != codes.OutOfRange {
				t.Errorf("code %v, want OutOfRange: %v", status.Code(err), err)
			}
			var ce *CompactedError
			var fe *FutureRevisionError
			switch {
			case tc.detail != nil && (!errors.As(err, &ce) || ce.CompactRevision != 50 || ce.ShardID != 1):
				t.Errorf("want *CompactedError{1, 50}, got %v", err)
			case tc.future != nil && (!errors.As(err, &fe) || fe.Revision != 900 || fe.CurrentRevision != 60):
				t.Errorf("want *FutureRevisionError{900, 60}, got %v", err)
			}
		}
		if calls := n.calls.Load() - before; calls != 2 {
			t.Errorf("%d calls for two reads: a final error was retried", calls)
		}
	}
	// OUT_OF_RANGE with KeyNotInShard is still a stale route, retried.
	var refused bool
	n.hook = func(string, *pb.RequestHeader) error {
		if !refused {
			refused = true
			return withDetail(codes.OutOfRange, &pb.KeyNotInShard{Key: []byte("k")})
		}
		return nil
	}
	if _, err := c.GetAt(ctx, []byte("k"), 0); err != nil {
		t.Fatalf("KeyNotInShard was not retried: %v", err)
	}
}

func TestScanAtReadsOneRevisionAcrossShardsAndPages(t *testing.T) {
	n1, n2 := newFakeNode(t, 1), newFakeNode(t, 2)
	n1.pageCap, n2.pageCap = 2, 2
	c := newTestClient(t, newStaticSource(fakeRoute(1, "", "m", 1, n1), fakeRoute(2, "m", "", 2, n2)), nil)
	ctx := context.Background()
	for _, k := range []string{"a", "b", "c"} { // revisions 1..3 on node 1
		if err := c.Put(ctx, []byte(k), []byte("old")); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 6 { // revisions 1..6 on node 2: n, o, p at 1..3, then again
		k := string(rune('n' + i%3))
		if err := c.Put(ctx, []byte(k), fmt.Appendf(nil, "v%d", i+1)); err != nil {
			t.Fatal(err)
		}
	}
	res, err := c.ScanAt(ctx, nil, nil, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if res.Revision != 3 {
		t.Errorf("ScanAt revision %d, want 3 (what node 1, which the range starts on, answered to Now)", res.Revision)
	}
	var got []string
	for _, kv := range res.KVs {
		got = append(got, fmt.Sprintf("%s=%s@%d", kv.Key, kv.Value, kv.ModRevision))
	}
	if want := "a=old@1 b=old@2 c=old@3 n=v1@1 o=v2@2 p=v3@3"; strings.Join(got, " ") != want {
		t.Errorf("ScanAt saw\n%s\nwant\n%s", strings.Join(got, " "), want)
	}
	var revs []uint64
	for _, n := range []*fakeNode{n1, n2} {
		for _, r := range n.requests() {
			if r.method == "scan" {
				revs = append(revs, r.rev)
			}
		}
	}
	if fmt.Sprint(revs) != "[3 3 3 3]" {
		t.Errorf("scan pages asked for revisions %v, want [3 3 3 3]: a range across shards reads every page at the revision Now answered", revs)
	}
	// At an explicit revision, and Scan reading the latest on every page.
	res, err = c.ScanAt(ctx, []byte("n"), nil, 0, 5)
	if err != nil || res.Revision != 5 || len(res.KVs) != 3 || string(res.KVs[1].Value) != "v5" || string(res.KVs[2].Value) != "v3" {
		t.Errorf("ScanAt 5: %+v %v", res, err)
	}
	kvs, err := c.Scan(ctx, nil, nil, 0)
	if err != nil || len(kvs) != 6 || string(kvs[5].Value) != "v6" {
		t.Errorf("Scan: %+v %v", kvs, err)
	}
	if res, err := c.ScanAt(ctx, nil, nil, 4, 0); err != nil || len(res.KVs) != 4 {
		t.Errorf("ScanAt with limit 4: %+v %v", res, err)
	}
}

func TestGetManyKeepsInputOrder(t *testing.T) {
	n1, n2 := newFakeNode(t, 1), newFakeNode(t, 2)
	c := newTestClient(t, newStaticSource(fakeRoute(1, "", "m", 1, n1), fakeRoute(2, "m", "", 2, n2)), nil)
	ctx := context.Background()
	var keys [][]byte
	for i := range 300 {
		k := fmt.Appendf(nil, "%c%03d", "az"[i%2], i)
		keys = append(keys, k)
		if i%3 != 0 { // every third key is absent
			if err := c.Put(ctx, k, append([]byte("v-"), k...)); err != nil {
				t.Fatal(err)
			}
		}
	}
	keys = append(keys, keys[1]) // a key twice
	res, err := c.GetMany(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != len(keys) {
		t.Fatalf("%d results for %d keys", len(res), len(keys))
	}
	for i, r := range res {
		wantFound := i == len(keys)-1 || i%3 != 0
		if string(r.KV.Key) != string(keys[i]) || r.Found != wantFound || (wantFound && string(r.KV.Value) != "v-"+string(keys[i])) || r.Revision == 0 {
			t.Fatalf("result %d: %+v, want key %s found %v", i, r, keys[i], wantFound)
		}
	}
	if n1.multis.Load()+n2.multis.Load() == 0 {
		t.Errorf("301 concurrent reads went as 301 unary calls: none shared a Multi")
	}
	// One failing key fails the call with the first failing key's error.
	n2.hook = func(method string, _ *pb.RequestHeader) error {
		if method == "get" {
			return status.Error(codes.InvalidArgument, "scripted refusal")
		}
		return nil
	}
	if _, err := c.GetMany(ctx, keys); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `"z001"`) {
		t.Errorf("GetMany with node 2 refusing: %v, want InvalidArgument naming z001", err)
	}
	if res, err := c.GetMany(ctx, nil); err != nil || res != nil {
		t.Errorf("GetMany of nothing: %v %v", res, err)
	}
}

func TestCompactReachesEveryShardOfTheRange(t *testing.T) {
	n1, n2 := newFakeNode(t, 1), newFakeNode(t, 2)
	c := newTestClient(t, newStaticSource(fakeRoute(1, "", "g", 1, n1), fakeRoute(2, "g", "p", 2, n2), fakeRoute(3, "p", "", 1, n1)), nil)
	ctx := context.Background()
	if err := c.Compact(ctx, []byte("c"), []byte("h"), 7); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range []*fakeNode{n1, n2} {
		for _, r := range n.requests() {
			got = append(got, fmt.Sprintf("%s s%d@%d", r.method, r.hdr.GetShardId(), r.rev))
		}
	}
	if strings.Join(got, ",") != "compact s1@7,compact s2@7" {
		t.Errorf("requests %v, want shards 1 and 2 compacted at 7, not 3", got)
	}
	if err := c.Compact(ctx, nil, nil, 0); status.Code(err) != codes.InvalidArgument {
		t.Errorf("revision 0: %v", err)
	}
}
