package concurrency

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/internal/testutil"
	"github.com/flotilla-kv/flotilla/router"
)

// next returns the next leader obs reports.
func next(t *testing.T, obs <-chan router.KeyValue) router.KeyValue {
	t.Helper()
	select {
	case kv, ok := <-obs:
		if !ok {
			t.Fatal("observe ended")
		}
		return kv
	case <-time.After(20 * time.Second):
		t.Fatal("no leader change observed in 20s")
	}
	panic("unreachable")
}

// TestElection: the first candidate leads, an observer sees it, its new
// value and, once it resigns, the candidate waiting behind it.
func TestElection(t *testing.T) {
	tf := newTestFleet(t)
	ctx := testutil.Context(t, 60*time.Second)
	c := tf.client()
	const prefix = "/elect/scheduler"
	a := NewElection(tf.session(ctx, c, 0), prefix)
	b := NewElection(tf.session(ctx, tf.client(), 0), prefix)
	watcher := NewElection(tf.session(ctx, c, 0), prefix)

	if _, err := watcher.Leader(ctx); !errors.Is(err, ErrElectionNoLeader) {
		t.Fatalf("leader of an empty election: %v", err)
	}
	if err := a.Proclaim(ctx, []byte("x")); !errors.Is(err, ErrElectionNotLeader) {
		t.Fatalf("proclaim before campaigning: %v", err)
	}
	octx, stop := context.WithCancel(ctx)
	defer stop()
	obs := watcher.Observe(octx)

	if err := a.Campaign(ctx, []byte("a")); err != nil {
		t.Fatal(err)
	}
	if got := next(t, obs); string(got.Value) != "a" || got.CreateRevision != a.Revision() {
		t.Fatalf("observed %q at %d, want a at %d", got.Value, got.CreateRevision, a.Revision())
	}
	campaigned := make(chan error, 1)
	go func() { campaigned <- b.Campaign(ctx, []byte("b")) }()
	waitQueued(t, ctx, c, prefix, 2)
	if l, err := watcher.Leader(ctx); err != nil || string(l.Value) != "a" {
		t.Fatalf("leader with a candidate waiting: %q, %v", l.Value, err)
	}

	if err := a.Proclaim(ctx, []byte("a2")); err != nil {
		t.Fatal(err)
	}
	if got := next(t, obs); string(got.Value) != "a2" || got.CreateRevision != a.Revision() {
		t.Fatalf("observed %q at %d, want a2 at %d", got.Value, got.CreateRevision, a.Revision())
	}
	select {
	case err := <-campaigned:
		t.Fatalf("b won while a leads: %v", err)
	default:
	}

	aRev := a.Revision()
	if err := a.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if a.Revision() != 0 || a.Key() != nil {
		t.Fatalf("a resigned and still holds revision %d, key %q", a.Revision(), a.Key())
	}
	if err := <-campaigned; err != nil {
		t.Fatal(err)
	}
	if b.Revision() <= aRev {
		t.Fatalf("b's revision %d not above a's %d", b.Revision(), aRev)
	}
	if got := next(t, obs); string(got.Value) != "b" || got.CreateRevision != b.Revision() {
		t.Fatalf("observed %q at %d, want b at %d", got.Value, got.CreateRevision, b.Revision())
	}
	if err := a.Proclaim(ctx, []byte("a3")); !errors.Is(err, ErrElectionNotLeader) {
		t.Fatalf("proclaim after resigning: %v", err)
	}
	if l, err := watcher.Leader(ctx); err != nil || string(l.Value) != "b" {
		t.Fatalf("leader after the hand-over: %q, %v", l.Value, err)
	}
	stop()
	for range obs { // Observe closes its channel once its context ended
	}
}
