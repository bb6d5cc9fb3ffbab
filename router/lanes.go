package router

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
)

// lane is one exactly-once client: writes through it carry its ClientID
// and strictly increasing Seq. A lane carries one write at a time (the
// holder owns it between take and put), which is what shard's exactly-once
// rules require: never two writes of one ClientID in flight to a shard.
type lane struct {
	clientID uint64
	// seq is the Seq of the lane's latest write; only the holder touches it.
	seq uint64
}

// next gives the holder's write its Seq. Every attempt of that write,
// retries included, carries the same (clientID, Seq).
func (l *lane) next() uint64 {
	l.seq++
	return l.seq
}

// lanePool is a fixed set of lanes; a write waits for a free one.
type lanePool struct {
	free chan *lane
}

// newLanePool makes n lanes with distinct random non-zero ClientIDs from
// crypto/rand, so lanes of different Clients, processes and machines do not
// collide.
func newLanePool(n int) (*lanePool, error) {
	p := &lanePool{free: make(chan *lane, n)}
	seen := map[uint64]bool{0: true}
	var buf [8]byte
	for len(p.free) < n {
		if _, err := rand.Read(buf[:]); err != nil {
			return nil, fmt.Errorf("router: drawing a client ID: %w", err)
		}
		id := binary.LittleEndian.Uint64(buf[:])
		if seen[id] {
			continue
		}
		seen[id] = true
		p.free <- &lane{clientID: id}
	}
	return p, nil
}

// take waits for a free lane, or for ctx or closed to end.
func (p *lanePool) take(ctx context.Context, closed <-chan struct{}) (*lane, error) {
	select {
	case l := <-p.free:
		return l, nil
	default:
	}
	select {
	case l := <-p.free:
		return l, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-closed:
		return nil, ErrClosed
	}
}

// put returns a lane taken from p.
func (p *lanePool) put(l *lane) {
	select {
	case p.free <- l:
	default:
		panic(fmt.Sprintf("router: lane %x returned to a full pool", l.clientID))
	}
}
