package sim

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Unary RPCs between processes: placement's Admin calls to the nodes,
// the nodes' registrations and heartbeats, a placement follower
// forwarding a request to its leader, the simulator's drain requests.
// A call is a request and an answer, each delayed like a Raft message
// (network.delay); the caller parks until the answer comes or its context
// ends, and the handler runs as an actor of the server's process. As over
// TCP, nothing is lost at random: a request or answer on a link that a
// partition cuts waits until the partition heals; a crash of the server
// fails the call (Unavailable: connection reset); a call to a process
// that is down fails at once (Unavailable: connection refused). A caller
// that gives up cancels the handler's context, as gRPC does.

// rpcCall is one call in progress.
type rpcCall struct {
	id       uint64
	from     *node // nil: the simulator's own tools
	fromInc  int
	to       *node
	toInc    int
	method   string
	serve    func(ctx context.Context) (any, error)
	answered bool
	resp     any
	err      error
	// abandoned: the caller gave up (its context ended, or it crashed).
	abandoned    bool
	cancelServer context.CancelFunc
}

// rpcEvent is a request arriving at its server, or an answer at its caller.
type rpcEvent struct {
	at     int
	seq    uint64
	call   *rpcCall
	answer bool
}

// rpcNet carries the calls. Single-threaded like the rest: the running
// actor or the simulator's goroutine.
type rpcNet struct {
	s      *simulation
	seq    uint64
	events []rpcEvent
	open   []*rpcCall // calls not answered yet
}

// unary sends method with req to `to` on behalf of the running actor (of
// process from), parks it until the answer or the end of ctx, and returns
// the answer. serve runs on `to`, as an actor, if the request arrives. The
// request and the answer are cloned, as marshalling would.
func unary[Req, Resp proto.Message](ctx context.Context, r *rpcNet, from, to *node, method string, req Req,
	serve func(context.Context, Req) (Resp, error)) (Resp, error) {
	var zero Resp
	cl := proto.Clone(req).(Req)
	resp, err := r.call(ctx, from, to, method, func(ctx context.Context) (any, error) {
		resp, err := serve(ctx, cl)
		if err != nil {
			return nil, err
		}
		return proto.Clone(resp), nil
	})
	if err != nil {
		return zero, err
	}
	return resp.(Resp), nil
}

// call is unary without types.
func (r *rpcNet) call(ctx context.Context, from, to *node, method string, serve func(ctx context.Context) (any, error)) (any, error) {
	s := r.s
	if ctx.Err() != nil {
		return nil, ctxStatus(ctx)
	}
	r.seq++
	c := &rpcCall{id: r.seq, from: from, to: to, method: method, serve: serve}
	if from != nil {
		c.fromInc = from.incarnation
	}
	if to == nil || !to.up() {
		// Connection refused: nothing was sent; the caller learns it at
		// the next step.
		at := s.step + 1
		s.actors.park(func() bool { return s.step >= at })
		return nil, status.Errorf(codes.Unavailable, "sim: %s: connection refused", addrOf(to))
	}
	c.toInc = to.incarnation
	r.open = append(r.open, c)
	r.queue(c, false)
	s.stats.RPCs++
	s.actors.park(func() bool { return c.answered || ctx.Err() != nil })
	if !c.answered {
		r.abandon(c)
		return nil, ctxStatus(ctx)
	}
	return c.resp, c.err
}

func (r *rpcNet) queue(c *rpcCall, answer bool) {
	r.seq++
	r.events = append(r.events, rpcEvent{at: r.s.step + r.s.net.delay(), seq: r.seq, call: c, answer: answer})
}

// abandon gives up c: its handler's context ends.
func (r *rpcNet) abandon(c *rpcCall) {
	c.abandoned = true
	if c.cancelServer != nil {
		c.cancelServer()
	}
	r.close(c)
}

func (r *rpcNet) close(c *rpcCall) {
	for i, o := range r.open {
		if o == c {
			r.open = append(r.open[:i], r.open[i+1:]...)
			return
		}
	}
}

// answer sends the handler's answer back to the caller.
func (r *rpcNet) answer(c *rpcCall, resp any, err error) {
	if c.abandoned {
		return
	}
	c.resp, c.err = resp, err
	r.queue(c, true)
}

// deliver handles the requests and answers due, in order: a request
// starts its handler, an answer wakes its caller.
func (r *rpcNet) deliver() {
	s := r.s
	var due []rpcEvent
	rest := r.events[:0]
	for _, e := range r.events {
		if e.at <= s.step {
			due = append(due, e)
		} else {
			rest = append(rest, e)
		}
	}
	clear(r.events[len(rest):])
	r.events = rest
	sortEvents(due)
	for _, e := range due {
		c := e.call
		if c.abandoned {
			continue
		}
		src, dst := c.from, c.to
		if e.answer {
			src, dst = c.to, c.from
		}
		if !r.linkOpen(src, dst) {
			// A partition holds it back, as TCP would, until it heals.
			e.at = s.step + 1
			r.events = append(r.events, e)
			continue
		}
		if e.answer {
			if c.from != nil && (!c.from.up() || c.from.incarnation != c.fromInc) {
				continue // the caller died meanwhile
			}
			c.answered = true
			r.close(c)
			continue
		}
		if !c.to.up() || c.to.incarnation != c.toInc {
			c.resp, c.err = nil, status.Errorf(codes.Unavailable, "sim: %s: connection reset", c.to.addr)
			c.answered = true
			r.close(c)
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		c.cancelServer = cancel
		s.actors.spawn(c.to, c.method, func() {
			resp, err := c.serve(ctx)
			cancel()
			r.answer(c, resp, err)
		})
	}
}

// linkOpen reports whether a partition lets messages from a to b through
// (the simulator's own tools are never cut off).
func (r *rpcNet) linkOpen(a, b *node) bool {
	return a == nil || b == nil || !r.s.net.isBlocked(a.id, b.id)
}

// crashed fails the calls n was serving (connection reset) and drops
// those it had made. Called when n goes down.
func (r *rpcNet) crashed(n *node) {
	open := append([]*rpcCall(nil), r.open...)
	for _, c := range open {
		switch {
		case c.from == n && c.fromInc == n.incarnation:
			r.abandon(c)
		case c.to == n && c.toInc == n.incarnation:
			c.resp, c.err = nil, status.Errorf(codes.Unavailable, "sim: %s: connection reset", n.addr)
			c.answered = true
			r.close(c)
		}
	}
}

func sortEvents(es []rpcEvent) {
	for i := 1; i < len(es); i++ {
		for j := i; j > 0 && (es[j].at < es[j-1].at || es[j].at == es[j-1].at && es[j].seq < es[j-1].seq); j-- {
			es[j], es[j-1] = es[j-1], es[j]
		}
	}
}

// ctxStatus is the status a gRPC call returns when its context ends.
func ctxStatus(ctx context.Context) error {
	if errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
		return status.Error(codes.DeadlineExceeded, "sim: deadline exceeded")
	}
	return status.Error(codes.Canceled, "sim: canceled")
}

func addrOf(n *node) string {
	if n == nil {
		return "nowhere"
	}
	return n.addr
}

// errString formats an RPC error for traces.
func errString(err error) string {
	if err == nil {
		return "ok"
	}
	if st, ok := status.FromError(err); ok {
		return fmt.Sprintf("%s: %s", st.Code(), st.Message())
	}
	return err.Error()
}
