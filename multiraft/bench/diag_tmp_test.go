package bench

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/flotilla-kv/flotilla/multiraft"
)

func TestDiagFsyncUnderLoad(t *testing.T) {
	dir := t.TempDir()
	n := openNode(t, 1, vfs.Default, filepath.Join(dir, "db"), nopTransport{}, nil)
	createGroups(t, 1, throughputGroups, n)
	stop := startTicker(n.e)
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := elect(ctx, 1, throughputGroups, n); err != nil {
		t.Fatal(err)
	}
	idle, _ := fsyncLatencies(dir, 200)
	done := make(chan []time.Duration)
	go func() {
		time.Sleep(time.Second)
		l, _ := fsyncLatencies(dir, 300)
		done <- l
	}()
	before := readSyncStats(n.e)
	ok, _, cpu := closedLoop(throughputProposers, throughputDuration, func(p int, seq uint64) error {
		_, err := n.e.Propose(ctx, multiraft.GroupID(1+p%throughputGroups), command(p, seq))
		return err
	})
	s := readSyncStats(n.e).minus(before)
	busy := <-done
	m := n.db.Metrics()
	t.Logf("ok/s=%.0f cpu=%.0f%% syncs=%d sync-ms=%.2f idle-fsync p50=%v p90=%v; under load p50=%v p90=%v p99=%v", float64(ok)/5, cpu, s.syncs, float64(s.nanos)/float64(s.syncs)/1e6,
		percentile(idle, 50), percentile(idle, 90), percentile(busy, 50), percentile(busy, 90), percentile(busy, 99))
	t.Logf("flushes=%d compactions=%d wal bytes=%d", m.Flush.Count, m.Compact.Count, m.WAL.BytesWritten)
	n.close(t)
}
