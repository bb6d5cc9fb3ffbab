package sim

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/flotilla-kv/flotilla/multiraft"
)

// opKind is the kind of a client request.
type opKind uint8

const (
	opGet opKind = iota
	opPut
	opDelete
	opCAS
	opBatch
)

func (k opKind) String() string {
	return [...]string{"get", "put", "delete", "cas", "batch"}[k]
}

// ambiguousReturn is the return time of a write whose outcome is
// unknown: it may take effect at any time after its call, so for the
// checker it never returns.
const ambiguousReturn = int64(1) << 60

// record is one finished request as the history keeps it.
type record struct {
	client int
	kind   opKind
	mode   multiraft.ReadMode // gets
	key    string             // gets
	ops    []kvOp             // writes
	out    string             // gets: the value read
	cas    casResult          // an acknowledged CAS: its outcome
	call   int64
	ret    int64
	// ambiguous: a write that may or may not have applied (ret is
	// ambiguousReturn).
	ambiguous bool
}

func (r record) String() string {
	var b []byte
	b = fmt.Appendf(b, "c%d [%d,", r.client, r.call)
	if r.ambiguous {
		b = append(b, "?]"...)
	} else {
		b = fmt.Appendf(b, "%d]", r.ret)
	}
	switch r.kind {
	case opGet:
		b = fmt.Appendf(b, " get/%v %s -> %q", r.mode, r.key, r.out)
	default:
		b = fmt.Appendf(b, " %v", r.kind)
		for _, o := range r.ops {
			switch o.op {
			case cmdPut:
				b = fmt.Appendf(b, " %s=%q", o.key, o.value)
			case cmdDelete:
				b = fmt.Appendf(b, " del(%s)", o.key)
			case cmdCAS:
				b = fmt.Appendf(b, " %s:%q->%q", o.key, o.expect, o.value)
			}
		}
		if r.kind == opCAS && !r.ambiguous {
			b = fmt.Appendf(b, " => ok=%v cur=%q", r.cas.ok, r.cas.cur)
		}
	}
	return string(b)
}

// client is a virtual client: it issues one request at a time, sends it
// to the node it believes leads the group, follows NotLeader hints and
// retries elsewhere while the request surely has not applied. A write
// whose outcome is ambiguous is retried only if the state machine applies
// each request at most once (the shard backend); otherwise it is recorded
// as ambiguous and the client moves on.
type client struct {
	s      *simulation
	id     int
	seq    uint64
	p      *pending
	nextAt int
	// leader is the index of the node believed to lead each group (by
	// group ID - 1); leaders is the same in a fleet run, whose shard IDs
	// are placement's.
	leader  []int
	leaders map[multiraft.GroupID]int
	// seen is the last value this client saw for each key, used as the
	// expected value of its CASes.
	seen map[string]string
	// pin, while a leader is isolated, is that node: the client sends
	// every request to it, for one of pinGroups, the groups it led
	// (isolation.go).
	pin       *node
	pinGroups []multiraft.GroupID
}

// pinnedTimeoutSteps is the request timeout of a client pinned to a
// cut-off node.
const pinnedTimeoutSteps = 8 * stepsPerTick

// pending is a request in progress.
type pending struct {
	rec  record
	g    multiraft.GroupID
	ver  uint64 // the Version of g's descriptor it is routed with
	cmd  []byte // writes
	node *node
	inc  int
	// sentAt is the step the current attempt was sent.
	sentAt int
	fut    *multiraft.Future // nil between attempts
	// inDoubt: an earlier attempt of this write may have applied.
	inDoubt  bool
	retryAt  int
	deadline int
	// w is the write as the watch checks know it (watchcheck.go): every
	// revision it was stamped with and how it ended. Nil for reads and
	// with the kv backend.
	w *issued
}

func newClient(s *simulation, id int) *client {
	c := &client{s: s, id: id, leader: make([]int, s.cfg.Groups), leaders: make(map[multiraft.GroupID]int), seen: make(map[string]string)}
	for i := range c.leader {
		c.leader[i] = s.rng.IntN(len(s.nodes))
	}
	return c
}

// leaderIdx returns the index of the node believed to lead g.
func (c *client) leaderIdx(g multiraft.GroupID) int {
	if c.s.fleet == nil {
		return c.leader[g-1]
	}
	idx, ok := c.leaders[g]
	if !ok {
		idx = c.s.rng.IntN(len(c.s.nodes))
		c.leaders[g] = idx
	}
	return idx
}

// setLeader records that the node at index idx is believed to lead g.
func (c *client) setLeader(g multiraft.GroupID, idx int) {
	if c.s.fleet == nil {
		c.leader[g-1] = idx
		return
	}
	c.leaders[g] = idx
}

// issue starts new requests on idle clients (during the workload) and
// sends the next attempt of requests waiting to retry.
func (s *simulation) issue(workload bool) {
	for _, c := range s.clients {
		switch {
		case c.p == nil && workload && s.step >= c.nextAt:
			c.start()
		case c.p != nil && c.p.fut == nil && s.step >= c.p.retryAt:
			c.attempt()
		}
	}
}

// start draws a new request and sends its first attempt.
func (c *client) start() {
	s := c.s
	var key string
	if s.fleet != nil && len(c.pinGroups) > 0 {
		// Pinned to a cut-off node: a key of a shard it led, if one
		// holds any.
		s.refreshRoutes()
		var ks []string
		for _, g := range c.pinGroups {
			ks = append(ks, s.groupKeys[g]...)
		}
		if len(ks) == 0 {
			c.nextAt = s.step + 5
			return
		}
		key = pick(s.rng, ks...)
	} else if s.fleet != nil {
		key = pick(s.rng, s.fleet.keys...)
		if s.owner[key] == 0 {
			s.refreshRoutes()
		}
		if s.owner[key] == 0 {
			// No shard holds the key yet (placement has not bootstrapped).
			c.nextAt = s.step + 5
			return
		}
	} else {
		key = groupKey(multiraft.GroupID(1+s.rng.IntN(s.cfg.Groups)), s.rng.IntN(s.cfg.KeysPerGroup))
	}
	c.seq++
	g := s.owner[key]
	if len(c.pinGroups) > 0 && s.fleet == nil {
		g = c.pinGroups[s.rng.IntN(len(c.pinGroups))]
		key = pick(s.rng, s.groupKeys[g]...)
	}
	val := fmt.Sprintf("c%d.%d", c.id, c.seq)
	if s.fleet != nil {
		// Values of varied sizes make shards grow past placement's split
		// size.
		val += strings.Repeat("~", s.rng.IntN(48))
	}
	p := &pending{g: g, ver: s.version[g], rec: record{client: c.id}, deadline: s.step + opTimeoutSteps}
	r := s.rng.IntN(100)
	if c.pin != nil {
		// A pinned client reads more, to probe what the cut-off node
		// still serves, and gives up sooner (a write there hangs until
		// it times out).
		if s.rng.IntN(2) == 0 {
			r = 80
		}
		p.deadline = s.step + pinnedTimeoutSteps
	}
	switch {
	case r < 25:
		p.rec.kind, p.rec.ops = opPut, []kvOp{{op: cmdPut, key: key, value: val}}
	case r < 30:
		p.rec.kind, p.rec.ops = opDelete, []kvOp{{op: cmdDelete, key: key}}
	case r < 45:
		expect := c.seen[key]
		if s.rng.IntN(4) == 0 {
			expect = pick(s.rng, "", fmt.Sprintf("c%d.%d", s.rng.IntN(len(s.clients)), c.seq-1))
		}
		p.rec.kind, p.rec.ops = opCAS, []kvOp{{op: cmdCAS, key: key, expect: expect, value: val}}
	case r < 55:
		p.rec.kind = opBatch
		ks := s.groupKeys[g]
		for _, i := range s.rng.Perm(len(ks))[:1+s.rng.IntN(len(ks))] {
			o := kvOp{op: cmdPut, key: ks[i], value: fmt.Sprintf("%s.%d", val, i)}
			if s.rng.IntN(5) == 0 {
				o = kvOp{op: cmdDelete, key: o.key}
			}
			p.rec.ops = append(p.rec.ops, o)
		}
	case r < 80:
		p.rec.kind, p.rec.mode, p.rec.key = opGet, multiraft.ReadLinearizable, key
	case r < 92:
		p.rec.kind, p.rec.mode, p.rec.key = opGet, multiraft.ReadLease, key
	default:
		p.rec.kind, p.rec.mode, p.rec.key = opGet, multiraft.ReadStale, key
	}
	if p.rec.kind == opGet && s.cfg.bug == bugReadWithoutOwnership {
		p.g = groupOfKey(key)
	}
	if p.rec.kind != opGet {
		p.cmd = s.sm.encode(uint64(c.id)+1, c.seq, g, p.ver, p.rec.kind, p.rec.ops)
		s.noteAttempt(c, p)
	}
	p.rec.call = s.now()
	c.p = p
	s.stats.Ops++
	c.attempt()
}

// attempt sends the request to the node the client believes leads the
// group (stale reads: to any node).
func (c *client) attempt() {
	s, p := c.s, c.p
	idx := c.leaderIdx(p.g)
	if p.rec.kind == opGet && (p.rec.mode == multiraft.ReadStale || s.cfg.bug == bugStaleReads) {
		idx = s.rng.IntN(len(s.nodes))
	}
	if c.pin != nil && c.pin.up() {
		idx = int(c.pin.id - 1)
	}
	n := s.nodes[idx]
	if !n.up() {
		// Connection refused: nothing was sent. Try the next node.
		c.setLeader(p.g, (idx+1)%len(s.nodes))
		p.retryAt = s.step + 1
		return
	}
	p.node, p.inc, p.sentAt = n, n.incarnation, s.step
	if p.rec.kind == opGet {
		mode := p.rec.mode
		if s.cfg.bug == bugStaleReads {
			mode = multiraft.ReadStale
		}
		p.fut = n.e.ReadFuture(p.g, mode)
	} else {
		p.fut = n.e.ProposeFuture(p.g, p.cmd)
	}
}

// pollClients collects the outcome of every request whose future
// resolved, and gives up on requests past their deadline.
func (s *simulation) pollClients() {
	for _, c := range s.clients {
		if c.p == nil {
			continue
		}
		switch {
		case c.p.fut != nil && isDone(c.p.fut):
			c.resolved()
		case s.step >= c.p.deadline:
			c.timeout()
		}
	}
}

// retry schedules another attempt after an outcome that surely did not
// apply: at the hinted leader at once, or at the next node.
func (c *client) retry(err error) {
	s, p := c.s, c.p
	p.fut = nil
	var nle *multiraft.NotLeaderError
	switch {
	case c.pin != nil:
		// Pinned: the same node again, after a pause.
		p.retryAt = s.step + 1 + s.rng.IntN(4)
	case errors.As(err, &nle):
		s.stats.NotLeader++
		if nle.Node != 0 && int(nle.Node-1) != c.leaderIdx(p.g) {
			c.setLeader(p.g, int(nle.Node-1))
			p.retryAt = s.step
			return
		}
		c.setLeader(p.g, (c.leaderIdx(p.g)+1)%len(s.nodes))
		p.retryAt = s.step + 1 + s.rng.IntN(4)
	case errors.Is(err, multiraft.ErrProposalDropped):
		s.stats.ProposalDropped++
		p.retryAt = s.step + 1 + s.rng.IntN(6)
	default:
		c.setLeader(p.g, (c.leaderIdx(p.g)+1)%len(s.nodes))
		p.retryAt = s.step + 1
	}
}

func (c *client) resolved() {
	s, p := c.s, c.p
	res, err := p.fut.Result()
	if p.rec.kind == opGet {
		if err == nil && (!p.node.up() || p.node.incarnation != p.inc) {
			err = multiraft.ErrStopped // answered, but the node died before we read
		}
		if err != nil {
			c.retry(err)
			return
		}
		p.rec.out = s.sm.read(p.node.db, p.rec.key)
		if !slices.Contains(p.node.e.Groups(), p.g) {
			// The replica applied its own removal and deleted its data
			// after the barrier resolved: what was read is not its state.
			// Like shard.Store.Get, check after reading, and retry.
			c.retry(multiraft.ErrGroupRemoved)
			return
		}
		if !s.sm.owns(p.node.db, p.g, p.rec.key) && s.cfg.bug != bugReadWithoutOwnership {
			// A split moved the key to another group.
			c.reroute()
			return
		}
		p.rec.ret = s.now()
		s.checkMinority(c)
		c.seen[p.rec.key] = p.rec.out
		if p.rec.mode == multiraft.ReadStale {
			s.stats.Stale++
			s.stale = append(s.stale, p.rec)
		} else {
			s.stats.Reads++
			s.history = append(s.history, p.rec)
		}
		c.done("n%d", p.node.id)
		return
	}
	switch {
	case err == nil:
		cas, err := s.sm.result(res, p.rec.ops)
		if errors.Is(err, errWrongShard) {
			c.reroute()
			return
		}
		if errors.Is(err, errRestamp) {
			c.restamp()
			return
		}
		if err != nil {
			s.violation("c%d: %v: the state machine refused a valid write: %v", c.id, p.rec, err)
		}
		s.noteAcked(p, res, cas)
		p.rec.cas = cas
		p.rec.ret = s.now()
		s.checkMinority(c)
		for _, o := range p.rec.ops {
			switch {
			case o.op == cmdPut:
				c.seen[o.key] = o.value
			case o.op == cmdDelete:
				c.seen[o.key] = ""
			case cas.ok:
				c.seen[o.key] = o.value
			default:
				c.seen[o.key] = cas.cur
			}
		}
		s.stats.Acked++
		s.history = append(s.history, p.rec)
		c.done("n%d", p.node.id)
	case errors.Is(err, multiraft.ErrAmbiguous) && s.sm.exactlyOnce():
		// The command carries the client's ID and sequence number: it
		// applies at most once however often it is proposed, so retry.
		p.inDoubt = true
		s.stats.AmbiguousRetries++
		c.retry(err)
	case errors.Is(err, multiraft.ErrAmbiguous):
		c.ambiguous(err)
	case errors.Is(err, multiraft.ErrNotLeader), errors.Is(err, multiraft.ErrProposalDropped),
		errors.Is(err, multiraft.ErrGroupNotFound), errors.Is(err, multiraft.ErrStopped),
		errors.Is(err, multiraft.ErrGroupRemoved):
		c.retry(err)
	default:
		s.stats.Unexpected++
		c.ambiguous(err)
	}
}

// reroute sends the request again, routed with the current table, after
// the group it was sent to refused it (it wrote nothing) or no longer owns
// the key read: a split moved it. A batch whose keys the split separated
// can no longer apply anywhere: it is ambiguous if an earlier attempt may
// have applied, and abandoned otherwise.
func (c *client) reroute() {
	s, p := c.s, c.p
	s.stats.WrongShard++
	if s.fleet != nil {
		s.refreshRoutes()
	}
	ks := p.rec.keys()
	g := s.owner[ks[0]]
	if g == 0 {
		// No live node holds a shard with the key: try again later.
		p.fut = nil
		p.retryAt = s.step + 5
		return
	}
	for _, k := range ks[1:] {
		if s.owner[k] != g {
			if p.inDoubt {
				c.ambiguous(errors.New("batch split across shards"))
			} else {
				s.stats.Abandoned++
				s.noteFailed(p)
				c.done("batch split across shards")
			}
			return
		}
	}
	p.g, p.ver = g, s.version[g]
	if p.rec.kind != opGet {
		p.cmd = s.sm.encode(uint64(c.id)+1, c.seq, g, p.ver, p.rec.kind, p.rec.ops)
		s.noteAttempt(c, p)
	}
	p.fut = nil
	p.retryAt = s.step + 1 + s.rng.IntN(3)
}

// restamp sends the write again with a new revision (see errRestamp).
func (c *client) restamp() {
	s, p := c.s, c.p
	s.stats.Restamped++
	p.cmd = s.sm.encode(uint64(c.id)+1, c.seq, p.g, p.ver, p.rec.kind, p.rec.ops)
	s.noteAttempt(c, p)
	p.fut = nil
	p.retryAt = s.step + 1
}

// ambiguous records the write as possibly applied and moves on.
func (c *client) ambiguous(err error) {
	s, p := c.s, c.p
	p.rec.ambiguous, p.rec.ret = true, ambiguousReturn
	if p.w != nil {
		p.w.ambiguous = true
	}
	s.stats.Ambiguous++
	s.history = append(s.history, p.rec)
	c.done("%v", err)
}

// timeout gives up on the request. A write with an attempt in flight may
// still apply: it is ambiguous. Anything else surely had no effect and is
// left out of the history.
func (c *client) timeout() {
	s, p := c.s, c.p
	// Like a router, suspect the node that did not answer: the next
	// request for the group goes to the next node.
	if p.node != nil && c.leaderIdx(p.g) == int(p.node.id-1) {
		c.setLeader(p.g, (c.leaderIdx(p.g)+1)%len(s.nodes))
	}
	if p.rec.kind != opGet && (p.fut != nil || p.inDoubt) {
		c.ambiguous(errors.New("timeout"))
		return
	}
	s.stats.Abandoned++
	if p.rec.kind != opGet {
		s.noteFailed(p)
	}
	c.done("abandoned")
}

func (c *client) done(format string, args ...any) {
	s := c.s
	s.tracef("op %v (%s)", c.p.rec, fmt.Sprintf(format, args...))
	c.p = nil
	c.nextAt = s.step + s.rng.IntN(3)
}

// clientsBusy reports whether any request is outstanding.
func (s *simulation) clientsBusy() bool {
	if s.bank != nil && s.bank.running > 0 {
		return true // a bank client still ends its transfer or audit
	}
	for _, c := range s.clients {
		if c.p != nil {
			return true
		}
	}
	return false
}
