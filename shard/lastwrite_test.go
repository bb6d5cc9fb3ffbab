package shard

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/internal/syskeys"
	"github.com/flotilla-kv/flotilla/internal/testutil"
	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/placement/tso"
)

// wholeShard opens a one-node store over oracle with shard 1 covering
// every key (the system span included), led here.
func wholeShard(t *testing.T, oracle Oracle) (*node, context.Context) {
	t.Helper()
	ctx := testCtx(t)
	store, err := NewStore(Config{}, oracle)
	if err != nil {
		t.Fatal(err)
	}
	n := openNodeWithStore(t, newDB(t), store)
	d := Descriptor{ShardID: 1, Epoch: Epoch{ConfVer: 1, Version: 1}, Replicas: []multiraft.Replica{{ReplicaID: 1, NodeID: 1}}}
	if err := n.store.CreateShard(d, 1); err != nil {
		t.Fatal(err)
	}
	n.campaign(ctx, 1)
	return n, ctx
}

func execRev(t *testing.T, ctx context.Context, s *Store, cmd *Command) uint64 {
	t.Helper()
	res, err := s.Execute(ctx, 1, cmd)
	if err != nil {
		t.Fatalf("%s: %v", cmd.Kind, err)
	}
	return res.Revision
}

func lastWrite(t *testing.T, ctx context.Context, s *Store) uint64 {
	t.Helper()
	l, err := s.LastWrite(ctx)
	if err != nil {
		t.Fatalf("LastWrite: %v", err)
	}
	return l
}

// TestLastWriteAnswersTheWrite: with a WriteOracle, LastWrite answers
// exactly the revision of the last write of user data, whatever else took
// timestamps since (a Resolve, a Now, lease records in the system span),
// and a read at it sees that write.
func TestLastWriteAnswersTheWrite(t *testing.T) {
	n, ctx := wholeShard(t, tso.Local())
	s := n.store
	w := execRev(t, ctx, s, &Command{Kind: KindPut, Key: []byte("k"), Value: []byte("v1")})
	if got := lastWrite(t, ctx, s); got != w {
		t.Fatalf("after a put at %d LastWrite = %d", w, got)
	}
	kv, found, err := s.GetAt(ctx, 1, Epoch{}, []byte("k"), w)
	if err != nil || !found || string(kv.Value) != "v1" || kv.ModRevision != w {
		t.Fatalf("GetAt(k, %d) = %+v, %v, %v; want v1 at %d", w, kv, found, err, w)
	}

	// Timestamps that stamp no user data leave it.
	if _, err := s.Resolve(ctx, 1); err != nil {
		t.Fatal(err)
	}
	now, err := s.Now(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sys := execRev(t, ctx, s, &Command{Kind: KindPut, Key: syskeys.LeaseRecordKey(7), Value: []byte("record")})
	sysBatch := execRev(t, ctx, s, &Command{Kind: KindBatch, Ops: []Op{{Key: syskeys.LeaseRecordKey(8), Value: []byte("r")}, {Key: syskeys.LeaseRecordKey(9), Value: []byte("r")}}})
	if got := lastWrite(t, ctx, s); got != w || now <= w || sys <= now || sysBatch <= sys {
		t.Fatalf("after a Resolve, a Now at %d and system writes at %d and %d, LastWrite = %d, want the put's %d", now, sys, sysBatch, got, w)
	}

	// A batch with one user key among system keys counts, and so do a
	// delete and a compare-and-swap.
	mixed := execRev(t, ctx, s, &Command{Kind: KindBatch, Ops: []Op{{Key: syskeys.LeaseRecordKey(10), Value: []byte("r")}, {Key: []byte("j"), Value: []byte("x")}}})
	if got := lastWrite(t, ctx, s); got != mixed {
		t.Fatalf("after a batch writing a user key at %d, LastWrite = %d", mixed, got)
	}
	del := execRev(t, ctx, s, &Command{Kind: KindDelete, Key: []byte("k")})
	if got := lastWrite(t, ctx, s); got != del {
		t.Fatalf("after a delete at %d, LastWrite = %d", del, got)
	}
	if _, found, err := s.GetAt(ctx, 1, Epoch{}, []byte("k"), del); err != nil || found {
		t.Fatalf("GetAt(k) at the delete's revision %d: found %v, %v", del, found, err)
	}
	cas := execRev(t, ctx, s, &Command{Kind: KindCompareAndSwap, Key: []byte("k"), ExpectAbsent: true, Value: []byte("v2")})
	if got := lastWrite(t, ctx, s); got != cas {
		t.Fatalf("after a compare-and-swap at %d, LastWrite = %d", cas, got)
	}
}

// TestLastWriteConcurrentWrites: writes of user and system keys stamped
// together in the stamper's batches; once all are acknowledged, LastWrite
// is the highest revision of a user write, even when system writes were
// stamped after it in the same batches.
func TestLastWriteConcurrentWrites(t *testing.T) {
	n, ctx := wholeShard(t, tso.Local())
	s := n.store
	const writers, each = 8, 25
	var (
		mu      sync.Mutex
		topUser uint64
		wg      sync.WaitGroup
	)
	for g := range writers {
		wg.Go(func() {
			for i := range each {
				cmd := &Command{Kind: KindPut, Key: fmt.Appendf(nil, "u%d-%d", g, i), Value: []byte("v")}
				if g%2 == 1 {
					cmd.Key = syskeys.LeaseRecordKey(uint64(1000*g + i))
				}
				res, err := s.Execute(ctx, 1, cmd)
				if err != nil {
					t.Error(err)
					return
				}
				if g%2 == 0 {
					mu.Lock()
					topUser = max(topUser, res.Revision)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if got := lastWrite(t, ctx, s); got != topUser {
		t.Fatalf("after concurrent writes LastWrite = %d, want the highest user write's revision %d", got, topUser)
	}
	calls, stamped := s.OracleStats()
	t.Logf("%d writes stamped in %d oracle calls", stamped, calls)
}

// TestLastWriteWithAPlainOracle: an Oracle that keeps no last write
// makes LastWrite a fresh timestamp, above every acknowledged write.
func TestLastWriteWithAPlainOracle(t *testing.T) {
	n, ctx := wholeShard(t, &counterOracle{})
	s := n.store
	w := execRev(t, ctx, s, &Command{Kind: KindPut, Key: []byte("k"), Value: []byte("v")})
	if got := lastWrite(t, ctx, s); got <= w {
		t.Fatalf("LastWrite with a plain oracle = %d, want a fresh timestamp above the write's %d", got, w)
	}
}

// heldOracle is tso.Local with a gate: while held, each call waits until
// the test releases one.
type heldOracle struct {
	*tso.Oracle
	release chan struct{}
	spans   chan [2]int // count and write span of each NextWrites
}

func (o *heldOracle) NextWrites(ctx context.Context, count, span int) (tso.Timestamp, tso.Timestamp, error) {
	<-o.release
	o.spans <- [2]int{count, span}
	return o.Oracle.NextWrites(ctx, count, span)
}

// waitQueued waits until n writes wait in the stamper for the next call.
func waitQueued(t *testing.T, s *Store, n int) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, func() error {
		s.stamp.mu.Lock()
		defer s.stamp.mu.Unlock()
		if q := len(s.stamp.mu.waiting); q != n {
			return fmt.Errorf("%d writes queued in the stamper, want %d", q, n)
		}
		return nil
	})
}

// TestLastWriteSpanInABatch: in one oracle call the batch keeps its
// arrival order and the write span ends at its last user write, so a
// system write stamped after it in the same call does not count, and one
// stamped before it does not hide it.
func TestLastWriteSpanInABatch(t *testing.T) {
	o := &heldOracle{Oracle: tso.Local(), release: make(chan struct{}), spans: make(chan [2]int, 8)}
	n, ctx := wholeShard(t, o)
	s := n.store
	for _, order := range []string{"user, system", "system, user"} {
		// A first write holds the stamper's one call, so that the next
		// two wait for the same call, in the order started.
		first := make(chan int, 1)
		go func() {
			_, err := s.Execute(ctx, 1, &Command{Kind: KindPut, Key: []byte("held"), Value: []byte("v")})
			if err != nil {
				t.Error(err)
			}
			first <- 0
		}()
		testutil.Eventually(t, 10*time.Second, func() error {
			s.stamp.mu.Lock()
			defer s.stamp.mu.Unlock()
			if !s.stamp.mu.calling || len(s.stamp.mu.waiting) != 0 {
				return fmt.Errorf("the first write's call is not out yet")
			}
			return nil
		})
		user := &Command{Kind: KindPut, Key: []byte("user"), Value: []byte("v")}
		system := &Command{Kind: KindPut, Key: syskeys.LeaseRecordKey(1), Value: []byte("r")}
		cmds := []*Command{user, system}
		if order == "system, user" {
			cmds = []*Command{system, user}
		}
		var pending []Pending
		for i, c := range cmds {
			pending = append(pending, s.Start(1, c))
			waitQueued(t, s, i+1)
		}
		o.release <- struct{}{} // the first write's call
		o.release <- struct{}{} // the batch of two
		<-first
		revs := map[*Command]uint64{}
		for i, p := range pending {
			res, err := p.Wait(ctx)
			if err != nil {
				t.Fatal(err)
			}
			revs[cmds[i]] = res.Revision
		}
		<-o.spans
		got := <-o.spans
		wantSpan := 1
		if order == "system, user" {
			wantSpan = 2
		}
		if got != [2]int{2, wantSpan} {
			t.Fatalf("%s: the batch's call had count and span %v, want [2 %d]", order, got, wantSpan)
		}
		if revs[cmds[1]] <= revs[cmds[0]] {
			t.Fatalf("%s: revisions %d then %d, not in arrival order", order, revs[cmds[0]], revs[cmds[1]])
		}
		// A LastWrite alone asks the oracle's LastWrite, which is not held.
		if l := lastWrite(t, ctx, s); l != revs[user] {
			t.Fatalf("%s: LastWrite = %d, want the user write's %d (the system write's is %d)", order, l, revs[user], revs[system])
		}
	}
}
