package rpc

import (
	"context"
	"testing"
	"time"

	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// TestKVRevisions: every write's answer carries its revision, each above
// the one before; reads return a key's create revision, mod revision and
// version, which a delete resets.
func TestKVRevisions(t *testing.T) {
	s := newStack(t, stackConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	kv := s.kv()
	h := &pb.RequestHeader{ShardId: 1}
	last := uint64(0)
	next := func(what string, rev uint64) uint64 {
		t.Helper()
		if rev <= last {
			t.Fatalf("%s at revision %d, not above the previous write's %d", what, rev, last)
		}
		last = rev
		return rev
	}
	get := func(key string) *pb.GetResponse {
		t.Helper()
		resp, err := kv.Get(ctx, &pb.GetRequest{Header: h, Key: []byte(key)})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	put := func(key, value string) uint64 {
		t.Helper()
		resp, err := kv.Put(ctx, &pb.PutRequest{Header: h, Key: []byte(key), Value: []byte(value)})
		if err != nil {
			t.Fatal(err)
		}
		return next("put "+key, resp.GetRevision())
	}
	r1 := put("a", "1")
	if g := get("a"); g.GetCreateRevision() != r1 || g.GetModRevision() != r1 || g.GetVersion() != 1 {
		t.Fatalf("after one put: %v", g)
	}
	r2 := put("a", "2")
	if g := get("a"); g.GetCreateRevision() != r1 || g.GetModRevision() != r2 || g.GetVersion() != 2 || string(g.GetValue()) != "2" {
		t.Fatalf("after two puts: %v", g)
	}
	cas, err := kv.CompareAndSwap(ctx, &pb.CompareAndSwapRequest{Header: h, Key: []byte("a"), Expected: []byte("x"), Value: []byte("3")})
	if err != nil || cas.GetSucceeded() {
		t.Fatalf("a failing CAS: %v, %v", cas, err)
	}
	next("failed cas", cas.GetRevision())
	if g := get("a"); g.GetModRevision() != r2 {
		t.Fatalf("a failed CAS changed the key: %v", g)
	}
	del, err := kv.Delete(ctx, &pb.DeleteRequest{Header: h, Key: []byte("a")})
	if err != nil {
		t.Fatal(err)
	}
	next("delete", del.GetRevision())
	if g := get("a"); g.GetFound() || g.GetModRevision() != 0 {
		t.Fatalf("after the delete: %v", g)
	}
	r5 := put("a", "again")
	if g := get("a"); g.GetCreateRevision() != r5 || g.GetVersion() != 1 {
		t.Fatalf("re-created after a delete: %v", g)
	}
	batch, err := kv.Batch(ctx, &pb.BatchRequest{Header: h, Ops: []*pb.BatchOp{{Key: []byte("b"), Value: []byte("1")}, {Key: []byte("c"), Value: []byte("1")}}})
	if err != nil {
		t.Fatal(err)
	}
	rb := next("batch", batch.GetRevision())
	scan, err := kv.Scan(ctx, &pb.ScanRequest{Header: h, Start: []byte("a"), End: []byte("d")})
	if err != nil || len(scan.GetKvs()) != 3 {
		t.Fatalf("scan: %v, %v", scan, err)
	}
	for i, want := range []uint64{r5, rb, rb} {
		if k := scan.GetKvs()[i]; k.GetModRevision() != want || k.GetCreateRevision() != want || k.GetVersion() != 1 {
			t.Fatalf("scan's %q: %v, want created and modified at %d", k.GetKey(), k, want)
		}
	}
	multi, err := kv.Multi(ctx, &pb.MultiRequest{Ops: []*pb.MultiOp{{Op: &pb.MultiOp_Put{Put: &pb.PutRequest{Header: h, Key: []byte("d"), Value: []byte("1")}}}}})
	if err != nil {
		t.Fatal(err)
	}
	next("put in a Multi", multi.GetResults()[0].GetPut().GetRevision())
}
