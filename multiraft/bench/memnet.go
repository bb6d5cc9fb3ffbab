package bench

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flotilla-kv/flotilla/multiraft"
)

// MaxQueuedMessages bounds the messages waiting for one destination node;
// beyond it Send drops messages and reports their replicas unreachable.
const MaxQueuedMessages = 1 << 16

// SnapshotTimeout bounds one snapshot transfer.
const SnapshotTimeout = 30 * time.Second

// errUnreachable is reported for a snapshot whose destination has no engine.
var errUnreachable = errors.New("bench: node unreachable")

// MemNetwork connects engines of one process. Each node has a delivery
// goroutine that hands its queued messages to its engine's Step, so the
// sender's worker never blocks; snapshots are streamed into a buffer and
// received on a goroutine per transfer. All methods are safe for
// concurrent use.
type MemNetwork struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // delivery and snapshot goroutines
	// dropped counts messages dropped because their node's queue was
	// full or no engine was attached.
	dropped atomic.Uint64

	mu struct {
		sync.RWMutex
		nodes map[multiraft.NodeID]*memNode
	}
}

type memNode struct {
	net  *MemNetwork
	id   multiraft.NodeID
	wake chan struct{} // capacity 1: queue became non-empty

	mu struct {
		sync.Mutex
		engine *multiraft.Engine // nil while detached
		queue  []multiraft.Message
	}
}

// NewMemNetwork returns an empty network. Close it to stop its goroutines.
func NewMemNetwork() *MemNetwork {
	n := &MemNetwork{}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.mu.nodes = make(map[multiraft.NodeID]*memNode)
	return n
}

// Transport returns the transport of node id, creating the node and its
// delivery goroutine on first use. Messages to the node are dropped until
// an engine is attached.
func (n *MemNetwork) Transport(id multiraft.NodeID) multiraft.Transport {
	return memTransport{n.node(id, true /* create */)}
}

func (n *MemNetwork) node(id multiraft.NodeID, create bool) *memNode {
	n.mu.RLock()
	nd := n.mu.nodes[id]
	n.mu.RUnlock()
	if nd != nil || !create {
		return nd
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if nd = n.mu.nodes[id]; nd == nil {
		nd = &memNode{net: n, id: id, wake: make(chan struct{}, 1)}
		n.mu.nodes[id] = nd
		n.wg.Add(1)
		go nd.deliver()
	}
	return nd
}

// Attach starts delivering node id's messages to e; Detach(id) stops it
// (call it before closing e). Messages for a detached node are dropped.
func (n *MemNetwork) Attach(id multiraft.NodeID, e *multiraft.Engine) {
	nd := n.node(id, true)
	nd.mu.Lock()
	nd.mu.engine = e
	nd.mu.Unlock()
}

// Detach stops delivery to node id and drops its queue.
func (n *MemNetwork) Detach(id multiraft.NodeID) {
	if nd := n.node(id, false); nd != nil {
		nd.mu.Lock()
		nd.mu.engine, nd.mu.queue = nil, nil
		nd.mu.Unlock()
	}
}

func (n *MemNetwork) engine(id multiraft.NodeID) *multiraft.Engine {
	nd := n.node(id, false)
	if nd == nil {
		return nil
	}
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.mu.engine
}

// Dropped returns how many messages the network dropped: their
// destination's queue was full or had no engine attached.
func (n *MemNetwork) Dropped() uint64 { return n.dropped.Load() }

// Close stops every goroutine of the network and waits for them. Detach
// or close the engines first.
func (n *MemNetwork) Close() {
	n.cancel()
	n.wg.Wait()
}

// deliver is the loop of a node's delivery goroutine.
func (nd *memNode) deliver() {
	defer nd.net.wg.Done()
	var batch []multiraft.Message
	for {
		select {
		case <-nd.wake:
		case <-nd.net.ctx.Done():
			return
		}
		nd.mu.Lock()
		e := nd.mu.engine
		batch, nd.mu.queue = nd.mu.queue, batch[:0]
		nd.mu.Unlock()
		if e != nil && len(batch) > 0 {
			e.Step(batch)
		}
		clear(batch)
	}
}

// enqueue queues the messages of msgs addressed to nd and returns those
// that did not fit.
func (nd *memNode) enqueue(msgs []multiraft.Message) (dropped []multiraft.Message) {
	nd.mu.Lock()
	for _, m := range msgs {
		switch {
		case m.ToNode != nd.id:
		case nd.mu.engine == nil || len(nd.mu.queue) >= MaxQueuedMessages:
			dropped = append(dropped, m)
		default:
			nd.mu.queue = append(nd.mu.queue, m)
		}
	}
	nd.mu.Unlock()
	select {
	case nd.wake <- struct{}{}:
	default:
	}
	return dropped
}

// memTransport is one node's multiraft.Transport on a MemNetwork.
type memTransport struct{ from *memNode }

// Send implements multiraft.Transport. It never blocks on the receiver.
func (t memTransport) Send(msgs []multiraft.Message) {
	net := t.from.net
	// A round addresses few nodes: queue the messages of each in one go.
	var seen [8]multiraft.NodeID
	done := seen[:0]
	for i := range msgs {
		to := msgs[i].ToNode
		if slices.Contains(done, to) {
			continue
		}
		done = append(done, to)
		var dropped []multiraft.Message
		if dst := net.node(to, false); dst != nil {
			dropped = dst.enqueue(msgs[i:])
		} else {
			for _, m := range msgs[i:] {
				if m.ToNode == to {
					dropped = append(dropped, m)
				}
			}
		}
		if len(dropped) > 0 {
			net.dropped.Add(uint64(len(dropped)))
			if src := net.engine(t.from.id); src != nil {
				for _, m := range dropped {
					src.ReportUnreachable(m.Group, multiraft.ReplicaID(m.Msg.GetTo()))
				}
			}
		}
	}
}

// SendSnapshot implements multiraft.Transport: the body is streamed into a
// buffer and received by the destination on a goroutine of its own.
func (t memTransport) SendSnapshot(s *multiraft.OutgoingSnapshot) {
	net := t.from.net
	net.wg.Add(1)
	go func() {
		defer net.wg.Done()
		defer s.Close()
		ctx, cancel := context.WithTimeout(net.ctx, SnapshotTimeout)
		defer cancel()
		var body bytes.Buffer
		err := s.WriteTo(ctx, &body)
		if err == nil {
			if dst := net.engine(s.ToNode); dst != nil {
				err = dst.ReceiveSnapshot(ctx, s.Message, &body)
			} else {
				err = errUnreachable
			}
		}
		if src := net.engine(t.from.id); src != nil {
			src.ReportSnapshot(s.Message, err)
		}
	}()
}
