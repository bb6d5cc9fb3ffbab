package rpc

import (
	"crypto/tls"
	"io"
	"net"
	"time"
)

// Demux returns a listener for placementd's gRPC server that yields every
// connection accepted on lis except the framed timestamp connections,
// which s serves itself (tsoconn.go), told apart by their first eight
// bytes as RaftServer.Demux tells framed Raft connections apart; it
// shares that listener's type. tlsCfg is the server's TLS configuration,
// the one its gRPC server uses, or nil for plaintext. Closing the
// returned listener closes lis and the connections still being told
// apart; the framed ones end with s.Close. Serve the result with the gRPC
// server, which then owns it.
func (s *TimestampServer) Demux(lis net.Listener, tlsCfg *tls.Config) net.Listener {
	d := &demuxListener{Listener: lis, conns: make(chan net.Conn), done: make(chan struct{}), failed: make(chan struct{})}
	d.mu.pending = make(map[net.Conn]struct{})
	go d.acceptFunc(func(c net.Conn) { d.sortTimestamps(s, c, tlsCfg) })
	return d
}

// acceptFunc accepts connections until lis fails, as accept does, and
// hands each to sort on a goroutine of its own.
func (d *demuxListener) acceptFunc(sort func(net.Conn)) {
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
		go sort(c)
	}
}

// sortTimestamps reads c's first bytes and hands it to s or to the gRPC
// server.
func (d *demuxListener) sortTimestamps(s *TimestampServer, c net.Conn, tlsCfg *tls.Config) {
	var head [len(tsConnMagic)]byte
	_ = c.SetReadDeadline(time.Now().Add(connHandshakeTimeout))
	n, err := io.ReadFull(c, head[:])
	_ = c.SetReadDeadline(time.Time{})
	if !d.donePending(c) {
		return
	}
	switch {
	case err == nil && string(head[:]) == tsConnMagic:
		s.serve(c, tlsCfg)
	case n == 0:
		_ = c.Close()
	default:
		pc := &prefixConn{Conn: c, prefix: head[:n]}
		select {
		case d.conns <- pc:
		case <-d.done:
			_ = c.Close()
		}
	}
}
