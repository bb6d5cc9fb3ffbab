package multiraft

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/flotilla-kv/flotilla/internal/keys"
)

// testSM is a minimal state machine for engine tests: a command "k=v" sets
// k to v inside the group's own key space and returns the previous value.
type testSM struct {
	group GroupID
	// members is the last membership it was told about.
	members Membership
}

func (s *testSM) key(k string) []byte {
	return keys.MVCCKey(append(binary.BigEndian.AppendUint64(nil, uint64(s.group)), k...), 0)
}

func (s *testSM) span() ([]byte, []byte) {
	p := binary.BigEndian.AppendUint64(nil, uint64(s.group))
	return keys.UserSpan(p, binary.BigEndian.AppendUint64(nil, uint64(s.group)+1))
}

func (s *testSM) Apply(ac *ApplyContext, e Entry) any {
	k, v, ok := strings.Cut(string(e.Cmd), "=")
	if !ok {
		panic(fmt.Sprintf("bad command %q", e.Cmd))
	}
	prev, closer, err := ac.Batch.Get(s.key(k))
	var old string
	switch {
	case err == nil:
		old = string(prev)
		closer.Close()
	case !errors.Is(err, pebble.ErrNotFound):
		// The contract of Apply for a failed read.
		panic(fmt.Errorf("%w: testSM: %w", ErrDiskFailure, err))
	}
	if err := ac.Batch.Set(s.key(k), []byte(v), nil); err != nil {
		panic(err)
	}
	return old
}

func (s *testSM) ApplyMembership(_ *ApplyContext, _ uint64, m Membership) { s.members = m }

func (s *testSM) Snapshot(r pebble.Reader, w io.Writer) error {
	lo, hi := s.span()
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		var hdr [8]byte
		binary.LittleEndian.PutUint32(hdr[:], uint32(len(it.Key())))
		binary.LittleEndian.PutUint32(hdr[4:], uint32(len(it.Value())))
		for _, b := range [][]byte{hdr[:], it.Key(), it.Value()} {
			if _, err := w.Write(b); err != nil {
				return err
			}
		}
	}
	_, err = w.Write([]byte("END!"))
	return err
}

func (s *testSM) Restore(b *pebble.Batch, r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if !bytes.HasSuffix(data, []byte("END!")) {
		return errors.New("truncated")
	}
	data = data[:len(data)-4]
	lo, hi := s.span()
	_ = b.DeleteRange(lo, hi, nil)
	for len(data) > 0 {
		if len(data) < 8 {
			return errors.New("corrupt")
		}
		kl, vl := binary.LittleEndian.Uint32(data), binary.LittleEndian.Uint32(data[4:])
		data = data[8:]
		if uint64(len(data)) < uint64(kl)+uint64(vl) {
			return errors.New("corrupt")
		}
		_ = b.Set(data[:kl], data[kl:kl+vl], nil)
		data = data[kl+vl:]
	}
	return nil
}

func (s *testSM) Destroy(b *pebble.Batch) {
	lo, hi := s.span()
	_ = b.DeleteRange(lo, hi, nil)
}

// get reads k of group directly from db.
func getKey(t testing.TB, db *pebble.DB, group GroupID, k string) (string, bool) {
	t.Helper()
	sm := &testSM{group: group}
	v, closer, err := db.Get(sm.key(k))
	if errors.Is(err, pebble.ErrNotFound) {
		return "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	return string(v), true
}

// cluster is a set of engines in manual mode over an in-memory network,
// driven step by step by the test: fully deterministic.
type cluster struct {
	t       testing.TB
	fs      map[NodeID]*vfs.MemFS
	dbs     map[NodeID]*pebble.DB
	engines map[NodeID]*Engine
	queue   []Message
	snaps   []*OutgoingSnapshot
	cut     map[NodeID]bool // nodes cut off from the network
	// damage, if set, may alter a snapshot body in flight.
	damage func([]byte) []byte
	// drop, if set, loses the messages it reports true for.
	drop func(Message) bool
	cfg  func(*Config)
}

type clusterTransport struct {
	c *cluster
}

func (t clusterTransport) Send(msgs []Message) { t.c.queue = append(t.c.queue, msgs...) }
func (t clusterTransport) SendSnapshot(s *OutgoingSnapshot) {
	t.c.snaps = append(t.c.snaps, s)
}

func newCluster(t testing.TB, nodes int, cfg func(*Config)) *cluster {
	c := &cluster{t: t, fs: map[NodeID]*vfs.MemFS{}, dbs: map[NodeID]*pebble.DB{}, engines: map[NodeID]*Engine{}, cut: map[NodeID]bool{}, cfg: cfg}
	for i := 1; i <= nodes; i++ {
		c.fs[NodeID(i)] = vfs.NewCrashableMem()
		c.start(NodeID(i))
	}
	t.Cleanup(func() {
		for id := range c.engines {
			c.stop(id)
		}
	})
	return c
}

func (c *cluster) start(n NodeID) {
	db, err := pebble.Open("", &pebble.Options{FS: c.fs[n], Logger: quietLogger{}})
	if err != nil {
		c.t.Fatal(err)
	}
	cfg := Config{
		NodeID:    n,
		DB:        db,
		Transport: clusterTransport{c},
		Workers:   -1,
		NewStateMachine: func(g GroupID, _ ReplicaID, _ pebble.Reader) (StateMachine, error) {
			return &testSM{group: g}, nil
		},
	}
	if c.cfg != nil {
		c.cfg(&cfg)
	}
	e, err := Open(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	c.dbs[n], c.engines[n] = db, e
}

func (c *cluster) stop(n NodeID) {
	if e := c.engines[n]; e != nil {
		_ = e.Close()
		_ = c.dbs[n].Close()
		delete(c.engines, n)
		delete(c.dbs, n)
	}
}

// crash stops n, dropping every write that was not synced, and restarts it.
func (c *cluster) crash(n NodeID) {
	crashed := c.fs[n].CrashClone(vfs.CrashCloneCfg{})
	c.stop(n)
	c.fs[n] = crashed
	c.start(n)
}

// deliver runs every engine and delivers messages until the network is
// quiet, at most max rounds.
func (c *cluster) deliver(max int) {
	for range max {
		work := 0
		for i := 1; i <= len(c.fs); i++ {
			if e := c.engines[NodeID(i)]; e != nil {
				work += e.Process()
			}
		}
		q := c.queue
		c.queue = nil
		for _, m := range q {
			if c.drop != nil && c.drop(m) {
				continue
			}
			if e := c.engines[m.ToNode]; e != nil && !c.cut[m.ToNode] && !c.cut[c.nodeOfSender(m)] {
				e.Step([]Message{m})
				work++
			}
		}
		snaps := c.snaps
		c.snaps = nil
		for _, s := range snaps {
			c.transferSnapshot(s)
			work++
		}
		if work == 0 {
			return
		}
	}
}

func (c *cluster) nodeOfSender(m Message) NodeID {
	for id, e := range c.engines {
		if g := e.lookup(m.Group); g != nil && uint64(g.replica) == m.Msg.GetFrom() {
			return id
		}
	}
	return 0
}

func (c *cluster) transferSnapshot(s *OutgoingSnapshot) {
	defer s.Close()
	from := c.nodeOfSender(s.Message)
	var buf bytes.Buffer
	err := s.WriteTo(context.Background(), &buf)
	e := c.engines[s.ToNode]
	if err == nil && (e == nil || c.cut[s.ToNode] || c.cut[from]) {
		err = errors.New("unreachable")
	}
	if err == nil {
		data := buf.Bytes()
		if c.damage != nil {
			data = c.damage(data)
		}
		f := e.ReceiveSnapshotFuture(s.Message, data)
		e.Process()
		_, err = f.Result()
		if !isDone(f) {
			err = errors.New("not processed")
		}
	}
	if src := c.engines[from]; src != nil {
		src.ReportSnapshot(s.Message, err)
	}
}

func isDone(f *Future) bool {
	select {
	case <-f.Done():
		return true
	default:
		return false
	}
}

// tick ticks every engine n times, delivering messages after each tick.
func (c *cluster) tick(n int) {
	for range n {
		for _, e := range c.engines {
			e.Tick()
		}
		c.deliver(100)
	}
}

// wait drives the cluster until f resolves, ticking if needed.
func (c *cluster) wait(f *Future) (any, error) {
	c.t.Helper()
	for range 200 {
		c.deliver(100)
		if isDone(f) {
			return f.Result()
		}
		c.tick(1)
	}
	c.t.Fatal("future did not resolve")
	return nil, nil
}

// leader returns the node whose replica leads group, ticking until one does.
func (c *cluster) leader(group GroupID) NodeID {
	c.t.Helper()
	for range 500 {
		for id, e := range c.engines {
			if g := e.lookup(group); g != nil && g.isLead && !c.cut[id] {
				return id
			}
		}
		c.tick(1)
	}
	c.t.Fatalf("no leader for group %d", group)
	return 0
}

func (c *cluster) createGroup(group GroupID, nodes ...NodeID) {
	c.t.Helper()
	var m Membership
	for _, n := range nodes {
		m.Replicas = append(m.Replicas, Replica{ReplicaID: ReplicaID(uint64(group)*100 + uint64(n)), NodeID: n})
	}
	for _, n := range nodes {
		if err := c.engines[n].CreateGroup(group, ReplicaID(uint64(group)*100+uint64(n)), m, nil); err != nil {
			c.t.Fatal(err)
		}
	}
}

func (c *cluster) propose(n NodeID, group GroupID, cmd string) (any, error) {
	return c.wait(c.engines[n].ProposeFuture(group, []byte(cmd)))
}

type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}
