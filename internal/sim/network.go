package sim

import (
	"bytes"
	"context"
	"fmt"
	"slices"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/flotilla-kv/flotilla/multiraft"
)

// netConfig is the network's fault profile for one run.
type netConfig struct {
	// lossPermille, dupPermille: per-message chance (in 1/1000) of loss
	// and of duplication.
	lossPermille, dupPermille int
	// maxDelay is the largest delay of a message in steps. Most messages
	// take zero or one step, one in four up to maxDelay, which reorders
	// them.
	maxDelay int
	// snapCutPermille is the chance that a snapshot transfer is cut
	// mid-stream; half of the cut transfers deliver the truncated body,
	// which the receiver must refuse.
	snapCutPermille int
}

// network is the simulated network: it implements multiraft.Transport for
// every node and delivers queued messages and snapshots when the
// simulator asks. Single-threaded: every call comes from the simulator's
// goroutine (the engines run in manual mode).
type network struct {
	s    *simulation
	cfg  netConfig
	seq  uint64
	msgs []inflight
	snap []inflightSnap
	// blocked[from][to]: messages from → to are dropped (partitions).
	blocked map[[2]multiraft.NodeID]bool
}

type inflight struct {
	at  int    // delivery step
	seq uint64 // sending order: ties deliver in order sent
	m   multiraft.Message
}

type inflightSnap struct {
	at   int
	seq  uint64
	m    multiraft.Message
	body []byte
	src  *node
	inc  int // src incarnation that sent it
	err  error
	cut  bool
}

// transport is the multiraft.Transport of one node.
type transport struct {
	net  *network
	node *node
}

// Send implements multiraft.Transport.
func (t transport) Send(msgs []multiraft.Message) {
	for _, m := range msgs {
		t.net.send(m)
	}
}

// SendSnapshot implements multiraft.Transport. The body is read at once
// (from the sender's Pebble snapshot, which is then released) and
// delivered after a delay like any message.
func (t transport) SendSnapshot(s *multiraft.OutgoingSnapshot) {
	n := t.net
	var buf bytes.Buffer
	err := s.WriteTo(context.Background(), &buf)
	s.Close()
	n.s.observeLeader(s.Message)
	n.seq++
	is := inflightSnap{at: n.s.step + n.delay(), seq: n.seq, m: s.Message, body: buf.Bytes(), src: t.node, inc: t.node.incarnation, err: err}
	if n.s.rng.IntN(1000) < n.cfg.snapCutPermille {
		is.cut = true
	}
	n.snap = append(n.snap, is)
	n.s.stats.SnapshotsSent++
}

// traceMsg traces m if its group is Config.TraceGroup.
func (n *network) traceMsg(what string, m multiraft.Message) {
	if m.Group != n.s.cfg.TraceGroup || n.s.cfg.TraceGroup == 0 {
		return
	}
	mm := m.Msg
	n.s.tracef("%s g%d n%d->n%d %v term=%d index=%d logterm=%d commit=%d reject=%v entries=%d quiesce=%v",
		what, m.Group, m.FromNode, m.ToNode, mm.GetType(), mm.GetTerm(), mm.GetIndex(), mm.GetLogTerm(),
		mm.GetCommit(), mm.GetReject(), len(mm.GetEntries()), m.Quiesce)
}

func (n *network) delay() int {
	if n.cfg.maxDelay == 0 {
		return 0
	}
	// Mostly short delays with a tail, so most messages keep their order
	// and some overtake others.
	if n.s.rng.IntN(4) == 0 {
		return n.s.rng.IntN(n.cfg.maxDelay + 1)
	}
	return n.s.rng.IntN(2)
}

func (n *network) send(m multiraft.Message) {
	n.traceMsg("send", m)
	n.s.observeLeader(m)
	n.s.stats.Messages++
	if n.isBlocked(m.FromNode, m.ToNode) {
		n.s.stats.Dropped++
		return
	}
	if n.cfg.lossPermille > 0 && n.s.rng.IntN(1000) < n.cfg.lossPermille {
		n.s.stats.Dropped++
		return
	}
	n.seq++
	n.msgs = append(n.msgs, inflight{at: n.s.step + n.delay(), seq: n.seq, m: m})
	if n.cfg.dupPermille > 0 && n.s.rng.IntN(1000) < n.cfg.dupPermille {
		d := m
		d.Msg = proto.CloneOf(m.Msg)
		n.seq++
		n.msgs = append(n.msgs, inflight{at: n.s.step + n.delay() + 1, seq: n.seq, m: d})
		n.s.stats.Duplicated++
	}
}

// reachable reports whether a message from → to would get through now.
func (n *network) reachable(from, to multiraft.NodeID) bool {
	return !n.isBlocked(from, to) && n.s.endpoint(to).up()
}

// isBlocked reports whether a partition cuts the link from → to.
func (n *network) isBlocked(from, to multiraft.NodeID) bool {
	return n.blocked[[2]multiraft.NodeID{from, to}] && n.s.cfg.bug != bugLeakyPartition
}

// deliver hands every message and snapshot due by now to its node.
func (n *network) deliver(now int) {
	var due []inflight
	rest := n.msgs[:0]
	for _, m := range n.msgs {
		if m.at <= now {
			due = append(due, m)
		} else {
			rest = append(rest, m)
		}
	}
	clear(n.msgs[len(rest):])
	n.msgs = rest
	slices.SortFunc(due, func(a, b inflight) int {
		if a.at != b.at {
			return a.at - b.at
		}
		return cmpU64(a.seq, b.seq)
	})
	// One Step call per destination, messages in delivery order.
	for _, dst := range n.s.procs() {
		var batch []multiraft.Message
		for _, m := range due {
			if m.m.ToNode != dst.id {
				continue
			}
			if !n.reachable(m.m.FromNode, dst.id) {
				n.s.stats.Dropped++
				continue
			}
			batch = append(batch, m.m)
			n.traceMsg("deliver", m.m)
		}
		if len(batch) > 0 {
			dst.e.Step(batch)
			n.s.stats.Delivered += len(batch)
		}
	}

	var snaps []inflightSnap
	restSnaps := n.snap[:0]
	for _, s := range n.snap {
		if s.at <= now {
			snaps = append(snaps, s)
		} else {
			restSnaps = append(restSnaps, s)
		}
	}
	clear(n.snap[len(restSnaps):])
	n.snap = restSnaps
	for _, s := range snaps {
		n.transferSnapshot(s)
	}
}

// transferSnapshot delivers one snapshot (or fails it) and reports the
// outcome to the sender, if the sender is still the incarnation that sent
// it.
func (n *network) transferSnapshot(s inflightSnap) {
	err := s.err
	dst := n.s.endpoint(s.m.ToNode)
	if err == nil && !n.reachable(s.m.FromNode, s.m.ToNode) {
		err = fmt.Errorf("sim: n%d unreachable from n%d", s.m.ToNode, s.m.FromNode)
	}
	if err == nil && s.cut {
		n.s.stats.SnapshotsCut++
		if n.s.rng.IntN(2) == 0 || len(s.body) == 0 {
			err = fmt.Errorf("sim: snapshot stream cut")
		} else {
			// Deliver the truncated body: the receiver must refuse it.
			body := s.body[:n.s.rng.IntN(len(s.body))]
			f := dst.e.ReceiveSnapshotFuture(s.m, body)
			dst.e.Process()
			_, ferr := f.Result()
			if !isDone(f) {
				n.s.violation("snapshot: a receipt for group %d on n%d did not resolve after Process", s.m.Group, dst.id)
			} else if ferr == nil {
				n.s.violation("snapshot: n%d accepted a truncated snapshot of group %d (%d of %d bytes)", dst.id, s.m.Group, len(body), len(s.body))
			}
			err = fmt.Errorf("sim: snapshot stream cut")
		}
	}
	if err == nil {
		f := dst.e.ReceiveSnapshotFuture(s.m, s.body)
		dst.e.Process()
		if !isDone(f) {
			n.s.violation("snapshot: a receipt for group %d on n%d did not resolve after Process", s.m.Group, dst.id)
			err = fmt.Errorf("sim: receipt did not resolve")
		} else if _, err = f.Result(); err == nil {
			n.s.stats.SnapshotsApplied++
		}
	}
	if s.src.up() && s.src.incarnation == s.inc {
		s.src.e.ReportSnapshot(s.m, err)
	}
	n.s.tracef("snap g%d n%d->n%d idx=%d err=%v", s.m.Group, s.m.FromNode, s.m.ToNode,
		s.m.Msg.GetSnapshot().GetMetadata().GetIndex(), err != nil)
}

// leaderOnly reports whether only a leader sends messages of type t.
func leaderOnly(t raftpb.MessageType) bool {
	switch t {
	case raftpb.MsgApp, raftpb.MsgHeartbeat, raftpb.MsgSnap, raftpb.MsgTimeoutNow:
		return true
	}
	return false
}

func isDone(f *multiraft.Future) bool {
	select {
	case <-f.Done():
		return true
	default:
		return false
	}
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
