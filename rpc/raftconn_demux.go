package rpc

import (
	"crypto/tls"
	"io"
	"net"
	"sync"
	"time"

	"github.com/flotilla-kv/flotilla/internal/framed"
)

// Demux returns a listener for the node's gRPC server that yields every
// connection accepted on lis except the framed Raft connections, which s
// serves itself (raftconn.go). A connection is told apart by its first
// eight bytes, which every client sends unprompted: raftConnMagic, a gRPC
// client's HTTP/2 preface, or a TLS ClientHello. So the framed transport
// needs no port of its own, and a fleet's addresses, flags and firewall
// rules stay as they are.
//
// tlsCfg is the server's TLS configuration (tlsconfig.Config.ServerTLS),
// the one its gRPC server uses, or nil for plaintext: framed connections
// then complete the same mutual TLS handshake after the magic. Closing
// the returned listener closes lis and the connections still being told
// apart; the framed connections end with s.Close. Serve the result with
// the gRPC server, which then owns it.
func (s *RaftServer) Demux(lis net.Listener, tlsCfg *tls.Config) net.Listener {
	return newDemux(lis, raftConnMagic, func(c net.Conn) { s.serveFramed(c, tlsCfg) })
}

// newDemux returns a demuxListener over lis that hands the connections
// opening with magic to serve (on their own goroutine, after the magic)
// and yields the others.
func newDemux(lis net.Listener, magic string, serve func(net.Conn)) *demuxListener {
	d := &demuxListener{Listener: lis, magic: magic, serve: serve,
		conns: make(chan net.Conn), done: make(chan struct{}), failed: make(chan struct{})}
	d.mu.pending = make(map[net.Conn]struct{})
	go d.accept()
	return d
}

// demuxListener is the gRPC side of a Demux: the connections that do not
// open with magic.
type demuxListener struct {
	net.Listener
	magic     string
	serve     func(net.Conn)
	conns     chan net.Conn
	done      chan struct{} // closed by Close
	closeOnce sync.Once
	failed    chan struct{} // closed when the accept loop ends with err
	err       error
	mu        struct {
		sync.Mutex
		// pending holds the connections whose first bytes are awaited;
		// nil once closed.
		pending map[net.Conn]struct{}
	}
}

// Accept implements net.Listener.
func (d *demuxListener) Accept() (net.Conn, error) {
	select {
	case c := <-d.conns:
		return c, nil
	case <-d.done:
		return nil, net.ErrClosed
	case <-d.failed:
		return nil, d.err
	}
}

// Close implements net.Listener.
func (d *demuxListener) Close() error {
	err := net.ErrClosed
	d.closeOnce.Do(func() {
		close(d.done)
		err = d.Listener.Close()
		d.mu.Lock()
		for c := range d.mu.pending {
			_ = c.Close()
		}
		d.mu.pending = nil
		d.mu.Unlock()
	})
	return err
}

// accept accepts connections until lis fails, retrying temporary errors
// (out of file descriptors) with backoff as net/http does.
func (d *demuxListener) accept() {
	var backoff time.Duration
	for {
		c, err := d.Listener.Accept()
		if err != nil {
			if ne, ok := err.(interface{ Temporary() bool }); ok && ne.Temporary() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(backoff):
					continue
				case <-d.done:
					return
				}
			}
			d.err = err
			close(d.failed)
			return
		}
		backoff = 0
		if !d.addPending(c) {
			_ = c.Close()
			return
		}
		go d.sort(c)
	}
}

func (d *demuxListener) addPending(c net.Conn) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.mu.pending == nil {
		return false
	}
	d.mu.pending[c] = struct{}{}
	return true
}

// donePending reports whether c was still pending (not closed by Close).
func (d *demuxListener) donePending(c net.Conn) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.mu.pending[c]; !ok {
		return false
	}
	delete(d.mu.pending, c)
	return true
}

// sort reads c's first bytes (as many as the magic has) and hands it to
// d.serve or to the gRPC server.
func (d *demuxListener) sort(c net.Conn) {
	head := make([]byte, len(d.magic))
	_ = c.SetReadDeadline(time.Now().Add(framed.HandshakeTimeout))
	n, err := io.ReadFull(c, head)
	_ = c.SetReadDeadline(time.Time{})
	if !d.donePending(c) {
		return
	}
	switch {
	case err == nil && string(head) == d.magic:
		d.serve(c)
	case n == 0:
		_ = c.Close()
	default:
		// Whatever else it is, gRPC's handshake decides.
		pc := &prefixConn{Conn: c, prefix: head[:n]}
		select {
		case d.conns <- pc:
		case <-d.done:
			_ = c.Close()
		}
	}
}

// prefixConn is a connection whose first bytes were read already.
type prefixConn struct {
	net.Conn
	prefix []byte
}

// Read implements net.Conn, returning the prefix first.
func (c *prefixConn) Read(b []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(b, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}
