package etcdapi

import (
	"bytes"
	"fmt"
	"sync"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// localAsk is one call of Config.LocalResolved.
type localAsk struct {
	start, end string
	endNil     bool
	rev        uint64
}

func (a localAsk) String() string {
	if a.endNil {
		return fmt.Sprintf("(%q, nil, %d)", a.start, a.rev)
	}
	return fmt.Sprintf("(%q, %q, %d)", a.start, a.end, a.rev)
}

// TestRangeAsksLocalResolved checks which reads ask Config.LocalResolved
// and with what: a linearizable point read asks for its key alone at the
// revision it answers at, a range for its span; a read at a revision the
// client gives does not ask (it may be below a compaction a local replica
// has not applied yet), nor do serializable reads, which read any
// replica anyway. With the hook answering false, every answer is the one the
// leaders give (the other tests' reads, without the hook).
func TestRangeAsksLocalResolved(t *testing.T) {
	var (
		mu   sync.Mutex
		asks []localAsk
	)
	a := startAPIWith(t, func(c *Config) {
		c.LocalResolved = func(start, end []byte, rev uint64) bool {
			mu.Lock()
			defer mu.Unlock()
			asks = append(asks, localAsk{start: string(start), end: string(end), endNil: end == nil, rev: rev})
			return false
		}
	})
	ctx := testCtx(t)
	w, err := a.router.PutRev(ctx, []byte("l/a"), []byte("one"))
	if err != nil {
		t.Fatal(err)
	}
	take := func() []localAsk {
		mu.Lock()
		defer mu.Unlock()
		out := asks
		asks = nil
		return out
	}
	check := func(name string, resp *clientv3.GetResponse, err error, want ...localAsk) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(resp.Kvs) != 1 || !bytes.Equal(resp.Kvs[0].Value, []byte("one")) {
			t.Fatalf("%s: got %v; want l/a = one", name, resp.Kvs)
		}
		got := take()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s asked LocalResolved %v; want %v", name, got, want)
		}
	}

	resp, err := a.client.Get(ctx, "l/a")
	check("point read", resp, err, localAsk{start: "l/a", endNil: true, rev: uint64(resp.Header.GetRevision())})
	if resp.Header.GetRevision() < int64(w.Revision) {
		t.Fatalf("point read at %d, below the write's revision %d", resp.Header.GetRevision(), w.Revision)
	}
	resp, err = a.client.Get(ctx, "l/", clientv3.WithPrefix())
	check("prefix read", resp, err, localAsk{start: "l/", end: "l0", rev: uint64(resp.Header.GetRevision())})
	resp, err = a.client.Get(ctx, "l/a", clientv3.WithRev(int64(w.Revision)))
	check("read at a revision", resp, err)
	resp, err = a.client.Get(ctx, "l/a", clientv3.WithSerializable())
	check("serializable read", resp, err)
}
