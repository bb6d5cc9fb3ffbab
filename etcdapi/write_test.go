package etcdapi

import (
	"errors"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestWrites runs etcd's Put, DeleteRange, Txn and Compact through
// clientv3 against a real fleet of four shards (split at first bytes
// 0x40, 0x80 and 0xc0; "w/..." is in the second).
func TestWrites(t *testing.T) {
	a := startAPI(t)
	c := a.client
	ctx := testCtx(t)

	t.Run("put", func(t *testing.T) {
		p1, err := c.Put(ctx, "w/a", "1")
		if err != nil {
			t.Fatal(err)
		}
		p2, err := c.Put(ctx, "w/a", "2", clientv3.WithPrevKV())
		if err != nil {
			t.Fatal(err)
		}
		if p2.PrevKv == nil || string(p2.PrevKv.Value) != "1" || p2.PrevKv.ModRevision != p1.Header.Revision || p2.Header.Revision <= p1.Header.Revision {
			t.Fatalf("prev kv %+v at %d, first put at %d", p2.PrevKv, p2.Header.Revision, p1.Header.Revision)
		}
		get, err := c.Get(ctx, "w/a")
		if err != nil || len(get.Kvs) != 1 {
			t.Fatal(get, err)
		}
		if kv := get.Kvs[0]; string(kv.Value) != "2" || kv.Version != 2 || kv.CreateRevision != p1.Header.Revision || kv.ModRevision != p2.Header.Revision {
			t.Fatalf("w/a = %+v", kv)
		}

		// Attach a lease keeping the value (ignore_value), then change the
		// value keeping the lease (ignore_lease).
		l, err := c.Grant(ctx, 60)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Put(ctx, "w/a", "", clientv3.WithLease(l.ID), clientv3.WithIgnoreValue()); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Put(ctx, "w/a", "3", clientv3.WithIgnoreLease()); err != nil {
			t.Fatal(err)
		}
		get, err = c.Get(ctx, "w/a")
		if err != nil || string(get.Kvs[0].Value) != "3" || get.Kvs[0].Lease != int64(l.ID) || get.Kvs[0].Version != 4 {
			t.Fatalf("after ignore_value and ignore_lease: %+v %v", get.Kvs, err)
		}
		for name, tc := range map[string]struct {
			err  error
			call func() error
		}{
			"empty key":        {rpctypes.ErrEmptyKey, func() error { _, err := c.Put(ctx, "", "v"); return err }},
			"missing lease":    {rpctypes.ErrLeaseNotFound, func() error { _, err := c.Put(ctx, "w/x", "v", clientv3.WithLease(12345)); return err }},
			"ignore absent":    {rpctypes.ErrKeyNotFound, func() error { _, err := c.Put(ctx, "w/none", "", clientv3.WithIgnoreValue()); return err }},
			"value and ignore": {rpctypes.ErrValueProvided, func() error { _, err := c.Put(ctx, "w/a", "v", clientv3.WithIgnoreValue()); return err }},
		} {
			if err := tc.call(); !errors.Is(err, tc.err) {
				t.Errorf("%s: %v, want %v", name, err, tc.err)
			}
		}
		if _, err := c.Put(ctx, "\xff\xffflotilla/x", "v"); status.Code(err) != codes.InvalidArgument {
			t.Errorf("put of a reserved key: %v", err)
		}
		if get, err := c.Get(ctx, "w/x"); err != nil || len(get.Kvs) != 0 {
			t.Errorf("a refused put wrote: %v %v", get, err)
		}
	})

	t.Run("delete", func(t *testing.T) {
		for _, k := range []string{"d/1", "d/2", "d/3", "\xd0d"} {
			if _, err := c.Put(ctx, k, "v"); err != nil {
				t.Fatal(err)
			}
		}
		del, err := c.Delete(ctx, "d/1", clientv3.WithPrevKV())
		if err != nil || del.Deleted != 1 || len(del.PrevKvs) != 1 || string(del.PrevKvs[0].Key) != "d/1" {
			t.Fatalf("delete one: %+v %v", del, err)
		}
		if del, err = c.Delete(ctx, "d/1"); err != nil || del.Deleted != 0 {
			t.Fatalf("delete again: %+v %v", del, err)
		}
		if del, err = c.Delete(ctx, "d/", clientv3.WithPrefix()); err != nil || del.Deleted != 2 || len(del.PrevKvs) != 0 {
			t.Fatalf("delete prefix: %+v %v", del, err)
		}
		// From a key on, across shards: the reserved span stays.
		if del, err = c.Delete(ctx, "d", clientv3.WithFromKey(), clientv3.WithPrevKV()); err != nil || del.Deleted < 1 || string(del.PrevKvs[len(del.PrevKvs)-1].Key) != "\xd0d" {
			t.Fatalf("delete from key: %+v %v", del, err)
		}
		if get, err := c.Get(ctx, "d", clientv3.WithFromKey()); err != nil || len(get.Kvs) != 0 {
			t.Fatalf("left after delete from key: %v %v", get, err)
		}
	})

	t.Run("txn", func(t *testing.T) {
		// Create if absent, as Kubernetes creates.
		create := func(v string) *clientv3.TxnResponse {
			t.Helper()
			resp, err := c.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision("t/obj"), "=", 0)).
				Then(clientv3.OpPut("t/obj", v)).Else(clientv3.OpGet("t/obj")).Commit()
			if err != nil {
				t.Fatal(err)
			}
			return resp
		}
		first := create("v1")
		if !first.Succeeded || first.Responses[0].GetResponsePut() == nil {
			t.Fatalf("create: %+v", first)
		}
		again := create("v2")
		got := again.Responses[0].GetResponseRange()
		if again.Succeeded || got == nil || len(got.Kvs) != 1 || string(got.Kvs[0].Value) != "v1" || got.Kvs[0].ModRevision != first.Header.Revision {
			t.Fatalf("second create: %+v", again)
		}
		// Update guarded by the mod revision, as GuaranteedUpdate does.
		upd, err := c.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision("t/obj"), "=", first.Header.Revision)).
			Then(clientv3.OpPut("t/obj", "v3", clientv3.WithPrevKV()), clientv3.OpGet("t/", clientv3.WithPrefix(), clientv3.WithCountOnly())).Commit()
		if err != nil || !upd.Succeeded {
			t.Fatal(upd, err)
		}
		if prev := upd.Responses[0].GetResponsePut().PrevKv; prev == nil || string(prev.Value) != "v1" {
			t.Fatalf("prev kv %+v", prev)
		}
		if n := upd.Responses[1].GetResponseRange().Count; n != 1 {
			t.Fatalf("count in txn: %d", n)
		}
		// Compares on value, version and a range, a nested txn, and a
		// delete with its previous values.
		if _, err := c.Put(ctx, "t/b", "x"); err != nil {
			t.Fatal(err)
		}
		resp, err := c.Txn(ctx).If(
			clientv3.Compare(clientv3.Value("t/obj"), "=", "v3"),
			clientv3.Compare(clientv3.Version("t/obj"), ">", 1),
			clientv3.Compare(clientv3.CreateRevision("t/"), ">", 0).WithPrefix(),
		).Then(
			clientv3.OpTxn([]clientv3.Cmp{clientv3.Compare(clientv3.Value("t/b"), "!=", "x")}, nil,
				[]clientv3.Op{clientv3.OpDelete("t/", clientv3.WithPrefix(), clientv3.WithPrevKV())}),
		).Commit()
		if err != nil || !resp.Succeeded {
			t.Fatal(resp, err)
		}
		nested := resp.Responses[0].GetResponseTxn()
		if nested == nil || nested.Succeeded || nested.Responses[0].GetResponseDeleteRange().Deleted != 2 || len(nested.Responses[0].GetResponseDeleteRange().PrevKvs) != 2 {
			t.Fatalf("nested: %+v", nested)
		}
		// A compare on a key no one wrote: version 0, and no value.
		resp, err = c.Txn(ctx).If(clientv3.Compare(clientv3.Value("t/none"), "!=", "a")).Then(clientv3.OpPut("t/none", "x")).Commit()
		if err != nil || resp.Succeeded {
			t.Fatalf("value compare on an absent key: %+v %v", resp, err)
		}
		// A compare on a negative number: every revision is above it.
		resp, err = c.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision("t/none"), ">", -1)).Then(clientv3.OpGet("t/none")).Commit()
		if err != nil || !resp.Succeeded {
			t.Fatalf("compare with -1: %+v %v", resp, err)
		}

		for name, tc := range map[string]struct {
			err error
			txn clientv3.Txn
		}{
			"duplicate put":       {rpctypes.ErrDuplicateKey, c.Txn(ctx).Then(clientv3.OpPut("t/k", "1"), clientv3.OpPut("t/k", "2"))},
			"put in a delete":     {rpctypes.ErrDuplicateKey, c.Txn(ctx).Then(clientv3.OpDelete("t/", clientv3.WithPrefix()), clientv3.OpPut("t/k", "2"))},
			"nested put of a put": {rpctypes.ErrDuplicateKey, c.Txn(ctx).Then(clientv3.OpPut("t/k", "1"), clientv3.OpTxn(nil, []clientv3.Op{clientv3.OpPut("t/k", "2")}, nil))},
		} {
			if _, err := tc.txn.Commit(); !errors.Is(err, tc.err) {
				t.Errorf("%s: %v, want %v", name, err, tc.err)
			}
		}
		many := make([]clientv3.Op, maxTxnOps+1)
		for i := range many {
			many[i] = clientv3.OpGet("t/k")
		}
		if _, err := c.Txn(ctx).Then(many...).Commit(); !errors.Is(err, rpctypes.ErrTooManyOps) {
			t.Errorf("too many ops: %v", err)
		}
		// Keys on two shards: one transaction across them, at one
		// revision; its compare holds at its start.
		resp, err = c.Txn(ctx).If(clientv3.Compare(clientv3.Version("\xd0x"), "=", 0)).
			Then(clientv3.OpPut("t/x", "1"), clientv3.OpPut("\xd0x", "1"), clientv3.OpGet("\xd0x")).Commit()
		if err != nil || !resp.Succeeded || len(resp.Responses) != 3 {
			t.Fatalf("txn across shards: %+v %v", resp, err)
		}
		for _, k := range []string{"t/x", "\xd0x"} {
			get, err := c.Get(ctx, k)
			if err != nil || len(get.Kvs) != 1 || get.Kvs[0].ModRevision != resp.Header.Revision {
				t.Errorf("%q after a txn across shards at %d: %v %v", k, resp.Header.Revision, get, err)
			}
		}
		// A leased put across shards is refused, and nothing written.
		lease, err := c.Grant(ctx, 60)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Txn(ctx).Then(clientv3.OpPut("t/y", "1", clientv3.WithLease(lease.ID)), clientv3.OpPut("\xd0y", "1")).Commit()
		if status.Code(err) != codes.Unimplemented {
			t.Errorf("leased txn across shards: %v", err)
		}
		if get, err := c.Get(ctx, "t/y"); err != nil || len(get.Kvs) != 0 {
			t.Errorf("a refused txn wrote: %v %v", get, err)
		}
	})

	t.Run("compact", func(t *testing.T) {
		p1, err := c.Put(ctx, "c/k", "old")
		if err != nil {
			t.Fatal(err)
		}
		p2, err := c.Put(ctx, "c/k", "new")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Compact(ctx, p2.Header.Revision); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Get(ctx, "c/k", clientv3.WithRev(p1.Header.Revision)); !errors.Is(err, rpctypes.ErrCompacted) {
			t.Fatalf("read below the compaction: %v", err)
		}
		if get, err := c.Get(ctx, "c/k", clientv3.WithRev(p2.Header.Revision)); err != nil || string(get.Kvs[0].Value) != "new" {
			t.Fatalf("read at the compaction: %v %v", get, err)
		}
		// Below a compaction: etcd's ErrCompacted.
		if _, err := c.Compact(ctx, p1.Header.Revision); !errors.Is(err, rpctypes.ErrCompacted) {
			t.Fatalf("compact below the compaction point: %v", err)
		}
	})
}
