package multiraft

import (
	"fmt"
	"testing"
)

// TestCrashKeepsAcknowledgedWrites crashes nodes repeatedly, each time
// dropping every write that was not synced, and checks that every write
// acknowledged before a crash is still there afterwards.
func TestCrashKeepsAcknowledgedWrites(t *testing.T) {
	for _, nodes := range []int{1, 3} {
		t.Run(fmt.Sprintf("nodes=%d", nodes), func(t *testing.T) {
			c := newCluster(t, nodes, nil)
			all := make([]NodeID, nodes)
			for i := range all {
				all[i] = NodeID(i + 1)
			}
			c.createGroup(1, all...)
			acked := map[string]string{}
			for round := range 10 {
				lead := c.leader(1)
				for i := range 10 {
					k, v := fmt.Sprintf("k%d", i), fmt.Sprintf("r%d", round)
					if _, err := c.propose(lead, 1, k+"="+v); err == nil {
						acked[k] = v
					}
				}
				victim := NodeID(round%nodes + 1)
				c.crash(victim)
				for _, e := range c.engines {
					e.NodeDown(victim)
				}
				c.tick(20)
				lead = c.leader(1)
				if _, err := c.wait(c.engines[lead].ReadFuture(1, ReadLinearizable)); err != nil {
					t.Fatalf("round %d: read barrier: %v", round, err)
				}
				for k, v := range acked {
					if got, _ := getKey(t, c.dbs[lead], 1, k); got != v {
						t.Fatalf("round %d: leader n%d has %s=%q, acknowledged %q", round, lead, k, got, v)
					}
				}
			}
		})
	}
}

// TestCorruptSnapshotRefused: a snapshot body damaged on the way is refused
// before raft sees it, and the follower catches up with the next one.
func TestCorruptSnapshotRefused(t *testing.T) {
	c := newCluster(t, 3, func(cfg *Config) { cfg.LogTruncateEntries, cfg.LogTruncateBytes = 10, 512 })
	c.createGroup(1, 1, 2, 3)
	lead := c.leader(1)
	behind := NodeID(lead%3 + 1)
	c.cut[behind] = true
	for i := range 60 {
		if _, err := c.propose(lead, 1, fmt.Sprintf("k%d=v", i)); err != nil {
			t.Fatal(err)
		}
	}
	c.tick(2)
	c.cut[behind] = false
	// Damage the first snapshot on the wire: flip a byte, cut the tail.
	damaged := 0
	c.damage = func(b []byte) []byte {
		if damaged > 0 {
			return b
		}
		damaged++
		b = append([]byte(nil), b...)
		b[len(b)/2] ^= 0xff
		return b[:len(b)-2]
	}
	c.tick(30)
	if damaged != 1 {
		t.Fatalf("no snapshot was sent (damaged=%d)", damaged)
	}
	if got := c.engines[behind].Metrics().SnapshotsRejected.Load(); got != 1 {
		t.Fatalf("SnapshotsRejected = %d, want 1", got)
	}
	if got := c.engines[behind].Metrics().SnapshotsApplied.Load(); got < 1 {
		t.Fatalf("SnapshotsApplied = %d, want a retry to succeed", got)
	}
	if v, _ := getKey(t, c.dbs[behind], 1, "k59"); v != "v" {
		t.Fatalf("follower did not catch up after refusing a corrupt snapshot")
	}
}
