package rpc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/flotilla-kv/flotilla/internal/framed"
	"github.com/flotilla-kv/flotilla/multiraft"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// Resolver maps a node to the address its gRPC server listens on.
type Resolver interface {
	Resolve(node multiraft.NodeID) (string, error)
}

// StaticResolver is a fixed node → address map.
type StaticResolver map[multiraft.NodeID]string

// Resolve implements Resolver.
func (r StaticResolver) Resolve(node multiraft.NodeID) (string, error) {
	if a, ok := r[node]; ok {
		return a, nil
	}
	return "", fmt.Errorf("rpc: no address for node %d", node)
}

// TransportConfig configures a Transport. Zero values mean defaults.
type TransportConfig struct {
	NodeID   multiraft.NodeID
	Resolver Resolver
	// Dial opens a client connection to an address. Required.
	Dial   func(addr string) (*grpc.ClientConn, error)
	Logger *slog.Logger
	// MaxQueueBytes bounds the messages queued for one peer; beyond it new
	// messages are dropped and reported unreachable. Default 16 MiB.
	MaxQueueBytes int
	// MaxBatchBytes caps one RaftBatch. Default 4 MiB.
	MaxBatchBytes int
	// SnapshotChunkBytes is the size of one snapshot chunk. Default 256 KiB.
	SnapshotChunkBytes int
	// SnapshotRateBytes limits outgoing snapshot bytes per second across all
	// transfers; 0 means unlimited.
	SnapshotRateBytes int64
	// MaxConcurrentSnapshots bounds snapshots sent at once (and received at
	// once by the server). Default 2.
	MaxConcurrentSnapshots int
	// MaxSnapshotBufferBytes bounds the memory the server holds for
	// incoming snapshot bodies, summed over the snapshots it receives at
	// once (each is buffered whole before the engine checks it); a chunk
	// that would exceed it fails its stream with ResourceExhausted, and
	// the sender retries later. Default multiraft.MaxSnapshotBytes.
	MaxSnapshotBufferBytes int64
	// ReconnectBackoff is the first delay before redialling a peer whose
	// connection ended; it doubles up to MaxReconnectBackoff while dials
	// fail, and starts over once one succeeds. Defaults 50 ms and 2 s.
	ReconnectBackoff, MaxReconnectBackoff time.Duration
	// Framed carries message batches on framed connections (raftconn.go)
	// instead of gRPC's Raft.Stream: a length-prefixed, checksummed frame
	// per batch on one TCP connection per peer, which costs the nodes
	// less CPU per replicated write than HTTP/2. The peers' listeners
	// must be demultiplexed (RaftServer.Demux); a peer whose listener is
	// not is sent batches on the gRPC stream instead. Snapshots always
	// travel on gRPC. Off by default.
	Framed bool
	// FramedTLS is the client TLS configuration of framed connections
	// (tlsconfig.Config.ClientTLS), nil for plaintext: it must match the
	// peers' servers, as Dial's credentials do. An empty ServerName is
	// set from the dialled address.
	FramedTLS *tls.Config
}

// Validate reports every problem of c at once, joined (errors.Join): a
// missing NodeID, Resolver or Dial, a negative size, count, rate or
// backoff, and a first backoff longer than the largest. Zero values are
// valid: they mean defaults. NewTransport expects a config that passes.
func (c TransportConfig) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("rpc: TransportConfig.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.NodeID == 0 {
		bad("NodeID", "required")
	}
	if c.Resolver == nil {
		bad("Resolver", "required")
	}
	if c.Dial == nil {
		bad("Dial", "required")
	}
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"MaxQueueBytes", int64(c.MaxQueueBytes)},
		{"MaxBatchBytes", int64(c.MaxBatchBytes)},
		{"SnapshotChunkBytes", int64(c.SnapshotChunkBytes)},
		{"SnapshotRateBytes", c.SnapshotRateBytes},
		{"MaxConcurrentSnapshots", int64(c.MaxConcurrentSnapshots)},
		{"MaxSnapshotBufferBytes", c.MaxSnapshotBufferBytes},
		{"ReconnectBackoff", int64(c.ReconnectBackoff)},
		{"MaxReconnectBackoff", int64(c.MaxReconnectBackoff)},
	} {
		if f.v < 0 {
			bad(f.name, "%d is negative", f.v)
		}
	}
	if d := c.withDefaults(); c.ReconnectBackoff > 0 && d.ReconnectBackoff > d.MaxReconnectBackoff {
		bad("ReconnectBackoff", "%v is longer than MaxReconnectBackoff %v", d.ReconnectBackoff, d.MaxReconnectBackoff)
	}
	return errors.Join(errs...)
}

func (c TransportConfig) withDefaults() TransportConfig {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.MaxQueueBytes == 0 {
		c.MaxQueueBytes = 16 << 20
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = 4 << 20
	}
	if c.SnapshotChunkBytes == 0 {
		c.SnapshotChunkBytes = 256 << 10
	}
	if c.MaxConcurrentSnapshots == 0 {
		c.MaxConcurrentSnapshots = 2
	}
	if c.MaxSnapshotBufferBytes == 0 {
		c.MaxSnapshotBufferBytes = multiraft.MaxSnapshotBytes
	}
	if c.ReconnectBackoff == 0 {
		c.ReconnectBackoff = 50 * time.Millisecond
	}
	if c.MaxReconnectBackoff == 0 {
		c.MaxReconnectBackoff = 2 * time.Second
	}
	return c
}

// Reporter receives what a Transport learns about delivery: messages it
// dropped (ReportUnreachable), the outcome of a snapshot transfer
// (ReportSnapshot), a peer node whose stream failed (NodeDown).
// *multiraft.Engine implements it. The transport calls it from its sender
// and snapshot goroutines, concurrently; its methods must not block.
type Reporter interface {
	ReportUnreachable(group multiraft.GroupID, to multiraft.ReplicaID)
	ReportSnapshot(m multiraft.Message, err error)
	NodeDown(node multiraft.NodeID)
}

// reporterRef holds a Reporter behind an atomic.Pointer.
type reporterRef struct{ Reporter }

// Transport implements multiraft.Transport over the network: one sender
// goroutine and one connection per peer node (never per group), a framed
// connection or a gRPC stream (see TransportConfig.Framed), a bounded
// queue per peer, and snapshots on their own gRPC call. Send never blocks.
type Transport struct {
	cfg TransportConfig
	// reporter is set once by SetReporter and read by the sender and
	// snapshot goroutines; nil until then.
	reporter atomic.Pointer[reporterRef]
	snapSem  chan struct{}
	limiter  *byteLimiter
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	mu struct {
		sync.Mutex
		peers map[multiraft.NodeID]*peer
		conns map[string]*grpc.ClientConn
	}
	Stats TransportStats
}

// NewTransport returns a transport configured by cfg (which should pass
// Validate). Construction is in two steps because the engine and the
// transport need each other: open the engine with the transport, then
// call SetReporter with it.
func NewTransport(cfg TransportConfig) *Transport {
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	t := &Transport{
		cfg:     cfg,
		snapSem: make(chan struct{}, cfg.MaxConcurrentSnapshots),
		limiter: newByteLimiter(cfg.SnapshotRateBytes),
		ctx:     ctx,
		cancel:  cancel,
	}
	t.mu.peers = make(map[multiraft.NodeID]*peer)
	t.mu.conns = make(map[string]*grpc.ClientConn)
	return t
}

// SetReporter sets the receiver of t's delivery reports, usually the
// engine opened with t. Call it once, right after the engine opens and
// before the node serves; it is safe against the sender goroutines
// already running. Until it is called, reports are dropped: Raft
// retransmits what a dropped report would have hastened. It panics when
// r is nil or a reporter is set already.
func (t *Transport) SetReporter(r Reporter) {
	if r == nil {
		panic("rpc: Transport.SetReporter with a nil Reporter")
	}
	if !t.reporter.CompareAndSwap(nil, &reporterRef{r}) {
		panic(fmt.Sprintf("rpc: Transport.SetReporter called twice (%T, then %T)", t.reporter.Load().Reporter, r))
	}
}

// report returns the reporter, or nil before SetReporter.
func (t *Transport) report() Reporter {
	if ref := t.reporter.Load(); ref != nil {
		return ref.Reporter
	}
	return nil
}

// Close stops every sender and closes the connections.
func (t *Transport) Close() {
	t.cancel()
	t.mu.Lock()
	for _, p := range t.mu.peers {
		p.wake()
	}
	t.mu.Unlock()
	t.wg.Wait()
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.mu.conns {
		_ = c.Close()
	}
	t.mu.conns = nil
}

// conn returns the shared client connection to node.
func (t *Transport) conn(node multiraft.NodeID) (*grpc.ClientConn, error) {
	addr, err := t.cfg.Resolver.Resolve(node)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mu.conns == nil {
		return nil, errors.New("rpc: transport closed")
	}
	if c, ok := t.mu.conns[addr]; ok {
		return c, nil
	}
	c, err := t.cfg.Dial(addr)
	if err != nil {
		return nil, err
	}
	t.mu.conns[addr] = c
	return c, nil
}

// Send implements multiraft.Transport.
func (t *Transport) Send(msgs []multiraft.Message) {
	for i := 0; i < len(msgs); {
		j := i + 1
		for j < len(msgs) && msgs[j].ToNode == msgs[i].ToNode {
			j++
		}
		t.peer(msgs[i].ToNode).enqueue(msgs[i:j])
		i = j
	}
}

// QueueLen returns how many messages wait in the peers' queues.
func (t *Transport) QueueLen() int {
	t.mu.Lock()
	peers := make([]*peer, 0, len(t.mu.peers))
	for _, p := range t.mu.peers {
		peers = append(peers, p)
	}
	t.mu.Unlock()
	n := 0
	for _, p := range peers {
		p.mu.Lock()
		n += len(p.mu.queue)
		p.mu.Unlock()
	}
	return n
}

func (t *Transport) peer(node multiraft.NodeID) *peer {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.mu.peers[node]
	if p == nil {
		p = &peer{t: t, node: node, signal: make(chan struct{}, 1)}
		t.mu.peers[node] = p
		t.wg.Add(1)
		go p.run()
	}
	return p
}

// TransportStats counts what the transport did; read with atomic loads.
type TransportStats struct {
	counters
}

// peer is the sending side towards one node.
type peer struct {
	t      *Transport
	node   multiraft.NodeID
	signal chan struct{}
	mu     struct {
		sync.Mutex
		queue []multiraft.Message
		bytes int
	}
}

func (p *peer) wake() {
	select {
	case p.signal <- struct{}{}:
	default:
	}
}

func msgBytes(m *multiraft.Message) int {
	n := 64
	for _, e := range m.Msg.GetEntries() {
		n += len(e.GetData()) + 16
	}
	return n
}

// enqueue adds msgs to the queue, dropping what does not fit.
func (p *peer) enqueue(msgs []multiraft.Message) {
	var dropped []multiraft.Message
	p.mu.Lock()
	for _, m := range msgs {
		n := msgBytes(&m)
		if p.mu.bytes+n > p.t.cfg.MaxQueueBytes {
			dropped = append(dropped, m)
			continue
		}
		p.mu.queue = append(p.mu.queue, m)
		p.mu.bytes += n
	}
	p.mu.Unlock()
	p.wake()
	if len(dropped) > 0 {
		p.t.Stats.dropped.Add(uint64(len(dropped)))
		p.t.reportUnreachable(dropped)
	}
}

func (t *Transport) reportUnreachable(msgs []multiraft.Message) {
	r := t.report()
	if r == nil {
		return
	}
	for _, m := range msgs {
		r.ReportUnreachable(m.Group, multiraft.ReplicaID(m.Msg.GetTo()))
	}
}

// run connects to the peer and drains the queue into its stream,
// reconnecting with backoff. Messages that cannot be sent are dropped and
// reported; Raft retransmits what matters.
func (p *peer) run() {
	defer p.t.wg.Done()
	wait := redial{first: p.t.cfg.ReconnectBackoff, max: p.t.cfg.MaxReconnectBackoff}
	for p.t.ctx.Err() == nil {
		established, err := p.connect()
		if p.t.ctx.Err() != nil {
			return
		}
		p.t.cfg.Logger.Debug("raft connection to peer ended", "node", p.node, "err", err)
		p.t.Stats.streamFailures.Add(1)
		if r := p.t.report(); r != nil {
			r.NodeDown(p.node)
		}
		// Drop what is queued: it is stale by the time we reconnect.
		p.mu.Lock()
		q := p.mu.queue
		p.mu.queue, p.mu.bytes = nil, 0
		p.mu.Unlock()
		p.t.reportUnreachable(q)
		select {
		case <-time.After(wait.next(established)):
		case <-p.t.ctx.Done():
			return
		}
	}
}

// redial is a peer's reconnection backoff: first after a connection that
// was established (the peer went away, and is likely restarting), then
// doubling up to max while dials keep failing. Starting over after every
// established connection keeps a peer that failed often in the past from
// waiting max after each of its later restarts.
type redial struct {
	first, max, cur time.Duration
}

// next returns how long to wait before the next dial, after a connection
// attempt that established a connection or not.
func (r *redial) next(established bool) time.Duration {
	if established || r.cur == 0 {
		r.cur = r.first
	} else {
		r.cur = min(2*r.cur, r.max)
	}
	return r.cur
}

// connect runs one connection to the peer until it fails: a framed one
// when the transport is configured for them and the peer serves them, the
// gRPC stream otherwise. established reports whether the connection was
// made (and then ended), as against a dial or handshake that failed.
func (p *peer) connect() (established bool, err error) {
	if !p.t.cfg.Framed {
		return p.stream()
	}
	conn, err := p.t.dialFramed(p.node)
	if errors.Is(err, framed.ErrUnsupported) {
		p.t.cfg.Logger.Debug("peer serves no framed Raft connections; using its gRPC stream", "node", p.node, "err", err)
		return p.stream()
	}
	if err != nil {
		return false, err
	}
	return true, p.framed(conn)
}

// stream runs one gRPC stream until it fails; established as connect's.
func (p *peer) stream() (established bool, err error) {
	conn, err := p.t.conn(p.node)
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithCancel(p.t.ctx)
	defer cancel()
	s, err := pb.NewRaftClient(conn).Stream(ctx)
	if err != nil {
		return false, err
	}
	// The receiver sends nothing: Recv returns when the stream ends, which
	// is how we learn at once that the peer went away.
	ended := make(chan error, 1)
	go func() {
		_, err := s.Recv()
		ended <- err
		cancel()
	}()
	batch := &pb.RaftBatch{FromNode: uint64(p.t.cfg.NodeID), ToNode: uint64(p.node)}
	var q []multiraft.Message
	for {
		select {
		case <-p.signal:
		case err := <-ended:
			return true, fmt.Errorf("stream ended: %w", err)
		case <-ctx.Done():
			return true, ctx.Err()
		}
		p.mu.Lock()
		q, p.mu.queue = p.mu.queue, q[:0]
		p.mu.bytes = 0
		p.mu.Unlock()
		for len(q) > 0 {
			n, size := 0, 0
			batch.Messages = batch.Messages[:0]
			for n < len(q) && (n == 0 || size < p.t.cfg.MaxBatchBytes) {
				m := &q[n]
				batch.Messages = append(batch.Messages, &pb.RaftMessage{
					Group: uint64(m.Group), ToNode: uint64(m.ToNode), FromNode: uint64(m.FromNode),
					Quiesce: m.Quiesce, Msg: m.Msg,
				})
				size += msgBytes(m)
				n++
			}
			if err := s.Send(batch); err != nil {
				p.t.reportUnreachable(q)
				return true, err
			}
			p.t.Stats.batches.Add(1)
			p.t.Stats.messages.Add(uint64(n))
			p.t.Stats.bytes.Add(uint64(proto.Size(batch)))
			clear(q[:n])
			q = q[n:]
		}
		q = q[:0]
	}
}

// SendSnapshot implements multiraft.Transport: it streams the snapshot on
// its own RPC from a goroutine, bounded by MaxConcurrentSnapshots and the
// byte rate, and reports the outcome to the engine.
func (t *Transport) SendSnapshot(snap *multiraft.OutgoingSnapshot) {
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		defer snap.Close()
		err := t.sendSnapshot(snap)
		if err != nil {
			t.cfg.Logger.Info("snapshot transfer failed", "group", snap.Group, "node", snap.ToNode, "err", err)
			t.Stats.snapshotFailures.Add(1)
		} else {
			t.Stats.snapshotsSent.Add(1)
		}
		if r := t.report(); r != nil {
			r.ReportSnapshot(snap.Message, err)
		}
	}()
}

func (t *Transport) sendSnapshot(snap *multiraft.OutgoingSnapshot) error {
	select {
	case t.snapSem <- struct{}{}:
		defer func() { <-t.snapSem }()
	case <-t.ctx.Done():
		return t.ctx.Err()
	}
	conn, err := t.conn(snap.ToNode)
	if err != nil {
		return err
	}
	s, err := pb.NewRaftClient(conn).Snapshot(t.ctx)
	if err != nil {
		return err
	}
	w := &chunkWriter{s: s, t: t, buf: make([]byte, 0, t.cfg.SnapshotChunkBytes)}
	w.header = &pb.RaftMessage{Group: uint64(snap.Group), ToNode: uint64(snap.ToNode), FromNode: uint64(snap.FromNode), Msg: snap.Msg}
	if err := snap.WriteTo(t.ctx, w); err != nil {
		if errors.Is(err, io.EOF) {
			return refusedEarly(s, err)
		}
		_ = s.CloseSend()
		return fmt.Errorf("building snapshot: %w", err)
	}
	if err := w.finish(); err != nil {
		if errors.Is(err, io.EOF) {
			return refusedEarly(s, err)
		}
		return err
	}
	resp, err := s.CloseAndRecv()
	if err != nil {
		return err
	}
	if !resp.GetAccepted() {
		return fmt.Errorf("rpc: snapshot refused: %s", resp.GetReason())
	}
	return nil
}

// refusedEarly returns why the receiver ended a snapshot stream before
// its end (a Send failed with io.EOF): its refusal, or sendErr.
func refusedEarly(s pb.Raft_SnapshotClient, sendErr error) error {
	resp, err := s.CloseAndRecv()
	switch {
	case err != nil:
		return err
	case !resp.GetAccepted():
		return fmt.Errorf("rpc: snapshot refused: %s", resp.GetReason())
	}
	return sendErr
}

// chunkWriter cuts a snapshot body into checksummed chunks.
type chunkWriter struct {
	s      pb.Raft_SnapshotClient
	t      *Transport
	header *pb.RaftMessage
	buf    []byte
	total  uint64
}

func (w *chunkWriter) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		k := min(cap(w.buf)-len(w.buf), len(b))
		w.buf = append(w.buf, b[:k]...)
		b = b[k:]
		if len(w.buf) == cap(w.buf) {
			if err := w.flush(false); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (w *chunkWriter) flush(last bool) error {
	if err := w.t.limiter.wait(w.t.ctx, len(w.buf)); err != nil {
		return err
	}
	w.total += uint64(len(w.buf))
	c := &pb.SnapshotChunk{Header: w.header, Data: w.buf, Crc32C: crc32.Checksum(w.buf, castagnoli), Last: last}
	if last {
		c.TotalBytes = w.total
	}
	w.header = nil
	err := w.s.Send(c)
	w.t.Stats.snapshotBytes.Add(uint64(len(w.buf)))
	w.buf = w.buf[:0]
	return err
}

func (w *chunkWriter) finish() error { return w.flush(true) }

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Receiver is what a RaftServer delivers to: incoming message batches
// (Step) and snapshots (PrecheckSnapshot before the body is received,
// ReceiveSnapshotFuture once it is). *multiraft.Engine implements it. The
// server calls it from its stream goroutines, concurrently.
type Receiver interface {
	Step(msgs []multiraft.Message)
	PrecheckSnapshot(m multiraft.Message) error
	ReceiveSnapshotFuture(m multiraft.Message, data []byte) *multiraft.Future
}

// RaftServer is the receiving side of the transport: it hands incoming
// batches, from gRPC streams and from framed connections (Demux), to the
// engine and receives snapshots.
type RaftServer struct {
	pb.UnimplementedRaftServer
	node    multiraft.NodeID
	engine  Receiver
	snapSem chan struct{}
	stats   *TransportStats
	// buffered is the memory held by incoming snapshot bodies, bounded by
	// maxBuffered (TransportConfig.MaxSnapshotBufferBytes).
	buffered    atomic.Int64
	maxBuffered int64
	// closing ends the inbound streams (see Close).
	closing   chan struct{}
	closeOnce sync.Once
	// framed holds the open framed connections and counts the goroutines
	// serving them (and their pingers).
	framed connSet
}

// NewRaftServer returns the Raft service of node, delivering to e (the
// engine opened with t), with t's limits on incoming snapshots.
func NewRaftServer(node multiraft.NodeID, e Receiver, t *Transport) *RaftServer {
	s := &RaftServer{node: node, engine: e, snapSem: make(chan struct{}, t.cfg.MaxConcurrentSnapshots), stats: &t.Stats,
		maxBuffered: t.cfg.MaxSnapshotBufferBytes, closing: make(chan struct{})}
	return s
}

// errClosing ends the inbound streams of a node that is shutting down.
var errClosing = status.Error(codes.Unavailable, "node is shutting down")

// Close ends every inbound Raft stream and framed connection, refuses new
// ones, and returns once the framed connections' goroutines are done. A
// peer's stream never ends on its own while the peer lives, so a node
// shutting down calls Close once its leaderships are handed off: its
// graceful gRPC stop then waits for requests in flight, not for its peers'
// streams until the shutdown timeout. Snapshots still being received
// finish.
func (s *RaftServer) Close() {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.framed.close()
	})
}

// connSet holds a server's open framed connections, so that closing the
// server ends them and waits for the goroutines that serve them (wg
// counts those, and any goroutine of theirs that Adds to it).
type connSet struct {
	wg sync.WaitGroup
	mu struct {
		sync.Mutex
		conns  map[net.Conn]struct{}
		closed bool
	}
}

// track registers c, whose goroutine then runs until untrack. It reports
// false once the set is closed.
func (s *connSet) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return false
	}
	if s.mu.conns == nil {
		s.mu.conns = make(map[net.Conn]struct{})
	}
	s.mu.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

// untrack closes and forgets c, registered by track.
func (s *connSet) untrack(c net.Conn) {
	_ = c.Close()
	s.mu.Lock()
	delete(s.mu.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

// close closes every connection, refuses new ones, and waits for their
// goroutines.
func (s *connSet) close() {
	s.mu.Lock()
	s.mu.closed = true
	for c := range s.mu.conns {
		_ = c.Close()
	}
	s.mu.conns = nil
	s.mu.Unlock()
	s.wg.Wait()
}

// Stream implements pb.RaftServer. The batches are received on a goroutine
// of the stream's own, so that Close can end the call while it waits in
// Recv; the goroutine ends with the call's stream.
func (s *RaftServer) Stream(stream pb.Raft_StreamServer) error {
	select {
	case <-s.closing:
		return errClosing
	default:
	}
	done := make(chan error, 1)
	go func() { done <- s.receive(stream) }()
	select {
	case err := <-done:
		return err
	case <-s.closing:
		return errClosing
	}
}

func (s *RaftServer) receive(stream pb.Raft_StreamServer) error {
	var msgs []multiraft.Message
	for {
		b, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if multiraft.NodeID(b.GetToNode()) != s.node {
			return status.Errorf(codes.FailedPrecondition, "batch for node %d reached node %d", b.GetToNode(), s.node)
		}
		msgs = msgs[:0]
		for _, m := range b.GetMessages() {
			if m.GetMsg() == nil {
				continue
			}
			msgs = append(msgs, multiraft.Message{
				Group: multiraft.GroupID(m.GetGroup()), ToNode: multiraft.NodeID(m.GetToNode()),
				FromNode: multiraft.NodeID(m.GetFromNode()), Quiesce: m.GetQuiesce(), Msg: m.GetMsg(),
			})
		}
		s.engine.Step(msgs)
		clear(msgs)
		s.stats.received.Add(uint64(len(b.GetMessages())))
	}
}

// snapshotMessage is the engine's message for a snapshot stream's header.
func snapshotMessage(h *pb.RaftMessage) multiraft.Message {
	return multiraft.Message{
		Group: multiraft.GroupID(h.GetGroup()), ToNode: multiraft.NodeID(h.GetToNode()),
		FromNode: multiraft.NodeID(h.GetFromNode()), Msg: h.GetMsg(),
	}
}

// Snapshot implements pb.RaftServer.
func (s *RaftServer) Snapshot(stream pb.Raft_SnapshotServer) error {
	select {
	case s.snapSem <- struct{}{}:
		defer func() { <-s.snapSem }()
	default:
		return status.Error(codes.ResourceExhausted, "too many concurrent snapshots; retry later")
	}
	var header *pb.RaftMessage
	var data []byte
	// Memory accounting: what this stream buffers is released once the
	// engine has taken (and copied) the body.
	var reserved int64
	defer func() { s.buffered.Add(-reserved) }()
	for {
		c, err := stream.Recv()
		if err == io.EOF {
			return status.Error(codes.DataLoss, "snapshot stream ended before its last chunk")
		}
		if err != nil {
			return err
		}
		if header == nil {
			header = c.GetHeader()
			if header == nil || header.GetMsg() == nil {
				return status.Error(codes.InvalidArgument, "first snapshot chunk has no header")
			}
			// A snapshot the engine would refuse anyway (for a replica
			// removed here, or overlapping another replica's range) is
			// refused before its body travels.
			if err := s.engine.PrecheckSnapshot(snapshotMessage(header)); err != nil {
				return stream.SendAndClose(&pb.SnapshotResponse{Accepted: false, Reason: err.Error()})
			}
		}
		if crc32.Checksum(c.GetData(), castagnoli) != c.GetCrc32C() {
			return status.Error(codes.DataLoss, "snapshot chunk checksum mismatch")
		}
		if len(data)+len(c.GetData()) > multiraft.MaxSnapshotBytes {
			return status.Errorf(codes.ResourceExhausted, "snapshot exceeds %d bytes", multiraft.MaxSnapshotBytes)
		}
		n := int64(len(c.GetData()))
		if s.buffered.Add(n) > s.maxBuffered {
			s.buffered.Add(-n)
			return status.Errorf(codes.ResourceExhausted, "snapshot buffers exceed %d bytes; retry later", s.maxBuffered)
		}
		reserved += n
		data = append(data, c.GetData()...)
		if c.GetLast() {
			if c.GetTotalBytes() != uint64(len(data)) {
				return status.Errorf(codes.DataLoss, "snapshot has %d bytes, sender sent %d", len(data), c.GetTotalBytes())
			}
			break
		}
	}
	_, err := s.engine.ReceiveSnapshotFuture(snapshotMessage(header), data).Wait(stream.Context())
	if err != nil {
		return stream.SendAndClose(&pb.SnapshotResponse{Accepted: false, Reason: err.Error()})
	}
	s.stats.snapshotsReceived.Add(1)
	return stream.SendAndClose(&pb.SnapshotResponse{Accepted: true})
}
