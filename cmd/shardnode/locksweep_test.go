package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-kv/flotilla/internal/cli"
	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/placement/tso"
	"github.com/flotilla-kv/flotilla/router"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
	"github.com/flotilla-kv/flotilla/shard"
)

// TestLockSweepFlags: the sweeper's flags and the record retention parse
// over their defaults, and validation reports every bad value at once.
func TestLockSweepFlags(t *testing.T) {
	c, err := parseConfig([]string{"--node-id", "1", "--data-dir", t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if c.LockSweep != defaultLockSweep() || c.TxnRecordRetention != shard.DefaultTxnRecordRetention {
		t.Fatalf("defaults: %+v, retention %s", c.LockSweep, c.TxnRecordRetention)
	}
	if got := c.shardConfig().TxnRecordRetention; got != shard.DefaultTxnRecordRetention {
		t.Fatalf("the store's retention: %s", got)
	}
	c.TxnRecordRetention = 0
	if got := c.shardConfig().TxnRecordRetention; got >= 0 {
		t.Fatalf("--txn-record-retention=0 gives the store %s, want records kept forever", got)
	}

	lc := defaultLockSweep()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	lc.registerFlags(fs)
	if err := fs.Parse([]string{"--lock-sweep-interval=0", "--lock-sweep-budget=5"}); err != nil {
		t.Fatal(err)
	}
	if lc.Interval != 0 || lc.Budget != 5 {
		t.Fatalf("parsed %+v", lc)
	}
	var p cli.Problems
	lockSweepConfig{Interval: -time.Second, Budget: 0}.validate(&p)
	if len(p) != 2 || !strings.Contains(p[0], "--lock-sweep-interval") || !strings.Contains(p[1], "--lock-sweep-budget") {
		t.Fatalf("problems: %v", p)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--txn-record-retention=-1s"}, "--txn-record-retention must not be negative"},
		{[]string{"--txn-record-retention=30s"}, "at least 1m0s"},
		{[]string{"--txn-record-retention=1m", "--lock-sweep-interval=7s"}, "below a tenth of --txn-record-retention"},
	} {
		_, err := parseConfig(append([]string{"--node-id", "1", "--data-dir", t.TempDir()}, tc.args...))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
	if _, err := parseConfig([]string{"--node-id", "1", "--data-dir", t.TempDir(), "--txn-record-retention=0", "--lock-sweep-interval=0"}); err != nil {
		t.Errorf("records kept forever, no sweeping: %v", err)
	}
}

// fakeGroups, fakeLister and fakeResolver stand for the engine, the
// store and the router in the sweeper's unit test.
type fakeGroups []multiraft.GroupSummary

func (g fakeGroups) Summaries() []multiraft.GroupSummary { return g }

type fakeLister struct {
	sweeps map[shard.ShardID]shard.LockSweep
	errs   map[shard.ShardID]error
	limits []int
}

func (f *fakeLister) SweepLocks(_ context.Context, id shard.ShardID, limit int) (shard.LockSweep, error) {
	f.limits = append(f.limits, limit)
	return f.sweeps[id], f.errs[id]
}

type fakeResolver struct{ got [][]*pb.Locked }

func (f *fakeResolver) SweepLocks(_ context.Context, locks []*pb.Locked) (router.SweepStats, error) {
	f.got = append(f.got, locks)
	// The last lock's transaction is still running.
	return router.SweepStats{Resolved: len(locks) - 1, Pending: 1}, nil
}

// TestLockSweeperRound: a round sweeps the shards the node leads and no
// other, hands the listed locks to the resolver as the wire's Locked,
// with the budget as the listing's limit, counts what was resolved, and
// reports the oldest lock's age over the led shards; a shard whose
// leadership moved is skipped without failing the round.
func TestLockSweeperRound(t *testing.T) {
	ts := func(ms int64) uint64 { return uint64(tso.Compose(ms, 0)) }
	lock := func(key string, startMs int64) shard.TxnLock {
		return shard.TxnLock{Key: []byte(key), Start: ts(startMs), Primary: []byte("p" + key), Prewrite: ts(startMs) + 1, TTL: 10}
	}
	lister := &fakeLister{
		sweeps: map[shard.ShardID]shard.LockSweep{
			1: {Now: ts(5000), Expired: []shard.TxnLock{lock("a", 1000), lock("b", 2000)}, Locks: 3, OldestStart: ts(1000)},
			2: {Now: ts(5000), Locks: 1, OldestStart: ts(4500)},
			3: {Now: ts(5000), Expired: []shard.TxnLock{lock("z", 10)}, Locks: 1, OldestStart: ts(10)}, // not led
		},
		errs: map[shard.ShardID]error{4: &multiraft.NotLeaderError{}},
	}
	res := &fakeResolver{}
	s := &lockSweeper{
		cfg:    lockSweepConfig{Interval: time.Second, Budget: 7},
		groups: fakeGroups{{Group: 1, Leading: true}, {Group: 2, Leading: true}, {Group: 3}, {Group: 4, Leading: true}},
		store:  lister, resolver: res, logger: slog.New(slog.DiscardHandler),
	}
	st := s.round(context.Background())
	if st.Resolved != 1 || st.Pending != 1 || st.Failed != 0 {
		t.Fatalf("round: %+v", st)
	}
	if len(res.got) != 1 || len(res.got[0]) != 2 {
		t.Fatalf("resolver got %v", res.got)
	}
	if l := res.got[0][1]; string(l.GetKey()) != "b" || l.GetStart() != ts(2000) || string(l.GetPrimary()) != "pb" || l.GetPrewrite() != ts(2000)+1 || l.GetTtlMs() != 10 {
		t.Fatalf("the second lock on the wire: %v", l)
	}
	if len(lister.limits) != 3 || lister.limits[0] != 7 {
		t.Fatalf("listings (shards 1, 2, 4 with the budget): %v", lister.limits)
	}
	if s.swept.Load() != 1 || s.oldestAgeMillis.Load() != 4000 {
		t.Fatalf("swept %d, oldest %d ms; want 1 and 4000 (shard 3 is not led)", s.swept.Load(), s.oldestAgeMillis.Load())
	}
	// Once the locks are gone, the gauge falls to 0.
	lister.sweeps = nil
	s.round(context.Background())
	if s.swept.Load() != 1 || s.oldestAgeMillis.Load() != 0 {
		t.Fatalf("after the locks went: swept %d, oldest %d ms", s.swept.Load(), s.oldestAgeMillis.Load())
	}
	// A listing error other than leadership is logged, not fatal.
	lister.errs = map[shard.ShardID]error{1: errors.New("disk")}
	s.round(context.Background())
}
