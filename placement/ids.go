package placement

import (
	"context"
	"errors"
	"time"

	"github.com/flotilla-kv/flotilla/multiraft"
	"github.com/flotilla-kv/flotilla/shard"
)

// idBlocks hands out shard and replica IDs reserved from the catalogue in
// blocks, so a scheduling round needs few Raft proposals. A block is
// dropped as soon as a heartbeat reports an ID at or above its next one
// (after the catalogue was lost, its first blocks may hold IDs the fleet
// still uses); the block reserved then starts past the reported ID, since
// Heartbeat raises the counters before the view learns of it.
type idBlocks struct {
	core      *core
	ctx       context.Context // Run's: reservations end with it
	next, end [4]uint64       // by counter
}

const idBlock = 64

var (
	// errAllocStopped: idBlocks could not reserve a block because the
	// round's context ended or this replica lost the lead.
	errAllocStopped = errors.New("placement: stopping while allocating IDs")
	// errAllocExhausted: the catalogue refused to reserve a block (its
	// counter is exhausted).
	errAllocExhausted = errors.New("placement: no IDs left to allocate")
)

// take returns the next ID of counter, reserving a new block when the
// current one is used up or in use, and retrying a reservation that
// failed for a passing reason. It fails with errAllocStopped once the
// round's context ends or this replica stops leading (its proposals fail
// at once, and it must not plan from its stale view when it leads again),
// and with errAllocExhausted when the catalogue refuses.
func (b *idBlocks) take(counter uint64) (uint64, error) {
	if b.next[counter] <= b.core.view.idInUse(counter) {
		b.next[counter] = b.end[counter] // IDs of this block are in use
	}
	if b.next[counter] == b.end[counter] {
		for {
			ctx, cancel := b.core.cfg.Runtime.WithTimeout(b.ctx, 5*time.Second)
			first, err := b.core.AllocateIDs(ctx, counter, idBlock)
			cancel()
			if err == nil {
				b.next[counter], b.end[counter] = first, first+idBlock
				break
			}
			if lead, _ := b.core.observeLeader(); b.ctx.Err() != nil || !lead {
				return 0, errAllocStopped
			}
			if errors.As(err, new(refusedError)) {
				b.core.cfg.Logger.Error("allocating IDs", "counter", counter, "err", err)
				return 0, errAllocExhausted
			}
			b.core.cfg.Logger.Warn("allocating IDs", "err", err)
		}
	}
	id := b.next[counter]
	b.next[counter]++
	return id, nil
}

// NewShardID implements schedule.IDAllocator.
func (b *idBlocks) NewShardID() (shard.ShardID, error) {
	id, err := b.take(CounterShard)
	return shard.ShardID(id), err
}

// NewReplicaID implements schedule.IDAllocator.
func (b *idBlocks) NewReplicaID() (multiraft.ReplicaID, error) {
	id, err := b.take(CounterReplica)
	return multiraft.ReplicaID(id), err
}
