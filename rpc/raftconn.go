package rpc

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/flotilla-kv/flotilla/internal/framed"
	"github.com/flotilla-kv/flotilla/multiraft"
)

// Framed Raft connections carry the transport's message batches without
// gRPC: one TCP connection per ordered pair of nodes, opened by the sender
// on the receiver's gRPC port and told apart from gRPC by its first bytes
// (RaftServer.Demux). On the wire:
//
//	sender → receiver   raftConnMagic (plaintext), then TLS when the
//	                    fleet runs with it, then the hello: from and to
//	                    node, 8 bytes each, big-endian
//	receiver → sender   the status: connAccepted, or connRefused
//	                    followed by a 2-byte length and the reason
//	sender → receiver   frames: payload length and CRC-32C of the payload
//	                    (4 bytes each, big-endian), then the payload: the
//	                    message count, and per message its group, to and
//	                    from nodes (uvarints), a flags byte (flagQuiesce)
//	                    and the raftpb.Message (uvarint length, protobuf)
//	receiver → sender   a ping byte every connPingInterval, so that the
//	                    sender learns within connSilenceTimeout that the
//	                    receiver is gone even when no segment reports it
//
// The sender's writer goroutine encodes everything queued for the peer
// into one buffer and writes it with one call; the receiver's reader
// decodes a frame into a reused buffer and hands its messages to the
// engine in one Step.
const (
	// raftConnMagic opens a framed connection. It matches neither a gRPC
	// client's first bytes in plaintext ("PRI * HTTP/2.0") nor in TLS (a
	// handshake record, 0x16).
	raftConnMagic = "FLRAFT\x00\x01"
	// helloBytes is the size of the sender's hello.
	helloBytes = 16
	// frameHeaderBytes is the size of a frame's length and checksum.
	frameHeaderBytes = 8
	// maxFrameBytes bounds a frame's payload on both sides. A batch is
	// capped at MaxBatchBytes, but one message may exceed it; one that
	// exceeds this bound is dropped by the sender and reported.
	maxFrameBytes = 64 << 20

	// connAccepted and connRefused answer the hello. They are long
	// enough that no other server's first bytes pass for them: a gRPC
	// server may write its HTTP/2 settings before it reads the client's
	// preface, and those start with a zero.
	connAccepted      = "FLRAFTOK"
	connRefused       = "FLRAFTNO"
	connPing     byte = 0

	flagQuiesce byte = 1

	// connPingInterval is how often a receiver pings its sender, and
	// connSilenceTimeout how long a sender waits for a ping before it
	// drops the connection (the gRPC stream's keepalive did the same).
	connPingInterval   = time.Second
	connSilenceTimeout = 3 * time.Second
	// connWriteTimeout bounds one write of batches: a receiver that does
	// not read for this long is treated as gone.
	connWriteTimeout = 10 * time.Second
)

// dialFramed opens a framed connection to node and completes its
// handshake.
func (t *Transport) dialFramed(node multiraft.NodeID) (net.Conn, error) {
	addr, err := t.cfg.Resolver.Resolve(node)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(t.ctx, framed.HandshakeTimeout)
	defer cancel()
	conn, err := framed.DialMagic(ctx, addr, raftConnMagic, t.cfg.FramedTLS)
	if err != nil {
		return nil, err
	}
	var hello [helloBytes]byte
	binary.BigEndian.PutUint64(hello[:8], uint64(t.cfg.NodeID))
	binary.BigEndian.PutUint64(hello[8:], uint64(node))
	if _, err := conn.Write(hello[:]); err != nil {
		_ = conn.Close()
		return nil, framed.UnsupportedIfClosed(err)
	}
	if err := readStatus(conn); err != nil {
		_ = conn.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, nil
}

// readStatus reads the receiver's answer to the hello. An answer that is
// neither status is another protocol's: framed.ErrUnsupported.
func readStatus(conn net.Conn) error {
	var b [len(connAccepted) + 2]byte
	if _, err := io.ReadFull(conn, b[:len(connAccepted)]); err != nil {
		return framed.UnsupportedIfClosed(err)
	}
	switch string(b[:len(connAccepted)]) {
	case connAccepted:
		return nil
	case connRefused:
		if _, err := io.ReadFull(conn, b[len(connRefused):]); err != nil {
			return err
		}
		reason := make([]byte, binary.BigEndian.Uint16(b[len(connRefused):]))
		if _, err := io.ReadFull(conn, reason); err != nil {
			return err
		}
		return fmt.Errorf("rpc: peer refused the Raft connection: %s", reason)
	default:
		return fmt.Errorf("%w: it answered the hello with %x", framed.ErrUnsupported, b[:len(connAccepted)])
	}
}

// framed runs one framed connection to the peer until it fails: the
// writer loop here, and a goroutine that reads the receiver's pings and
// reports the connection's end.
func (p *peer) framed(conn net.Conn) error {
	defer conn.Close()
	stop := context.AfterFunc(p.t.ctx, func() { _ = conn.Close() })
	defer stop()
	ended := make(chan error, 1)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		var buf [64]byte
		for {
			_ = conn.SetReadDeadline(time.Now().Add(connSilenceTimeout))
			if _, err := conn.Read(buf[:]); err != nil {
				ended <- err
				_ = conn.Close()
				return
			}
		}
	}()
	defer func() { _ = conn.Close(); <-readerDone }()

	var buf []byte
	var q []multiraft.Message
	for {
		select {
		case <-p.signal:
		case err := <-ended:
			return fmt.Errorf("connection ended: %w", err)
		case <-p.t.ctx.Done():
			return p.t.ctx.Err()
		}
		p.mu.Lock()
		q, p.mu.queue = p.mu.queue, q[:0]
		p.mu.bytes = 0
		p.mu.Unlock()
		buf = buf[:0]
		frames := 0
		for rest := q; len(rest) > 0; {
			n, size := 0, 0
			for n < len(rest) && (n == 0 || size < p.t.cfg.MaxBatchBytes) {
				size += msgBytes(&rest[n])
				n++
			}
			var dropped bool
			buf, dropped = appendFrame(buf, rest[:n])
			if dropped {
				p.t.Stats.dropped.Add(uint64(n))
				p.t.reportUnreachable(rest[:n])
			} else {
				frames++
				p.t.Stats.messages.Add(uint64(n))
			}
			rest = rest[n:]
		}
		if len(buf) > 0 {
			_ = conn.SetWriteDeadline(time.Now().Add(connWriteTimeout))
			if _, err := conn.Write(buf); err != nil {
				p.t.reportUnreachable(q)
				return err
			}
			p.t.Stats.batches.Add(uint64(frames))
			p.t.Stats.bytes.Add(uint64(len(buf)))
		}
		clear(q)
		q = q[:0]
		if cap(buf) > 4*p.t.cfg.MaxBatchBytes {
			buf = nil // do not hold a burst's buffer for ever
		}
	}
}

// appendFrame appends to buf a frame carrying msgs. When the frame would
// exceed maxFrameBytes it appends nothing and reports dropped.
func appendFrame(buf []byte, msgs []multiraft.Message) (_ []byte, dropped bool) {
	start := len(buf)
	buf = append(buf, make([]byte, frameHeaderBytes)...)
	buf = binary.AppendUvarint(buf, uint64(len(msgs)))
	for i := range msgs {
		m := &msgs[i]
		buf = binary.AppendUvarint(buf, uint64(m.Group))
		buf = binary.AppendUvarint(buf, uint64(m.ToNode))
		buf = binary.AppendUvarint(buf, uint64(m.FromNode))
		var flags byte
		if m.Quiesce {
			flags |= flagQuiesce
		}
		buf = append(buf, flags)
		var err error
		if buf, err = appendRaftMessage(buf, m.Msg); err != nil {
			panic(fmt.Sprintf("rpc: marshalling a raft message of group %d: %v", m.Group, err))
		}
	}
	payload := buf[start+frameHeaderBytes:]
	if len(payload) > maxFrameBytes {
		return buf[:start], true
	}
	binary.BigEndian.PutUint32(buf[start:], uint32(len(payload)))
	binary.BigEndian.PutUint32(buf[start+4:], crc32.Checksum(payload, castagnoli))
	return buf, false
}

// errBadFrame reports a frame that does not decode.
var errBadFrame = errors.New("rpc: malformed Raft frame")

// frameDecoder is what a connection's reader reuses from frame to frame.
type frameDecoder struct {
	msgs    []multiraft.Message
	scratch msgScratch
}

// decode decodes a frame's payload into the decoder's messages (valid
// until the next call). The Raft messages own their memory: the payload
// may be reused at once.
func (d *frameDecoder) decode(payload []byte) ([]multiraft.Message, error) {
	msgs := d.msgs[:0]
	defer func() { d.msgs = msgs[:0] }()
	count, k := binary.Uvarint(payload)
	// A message takes at least six bytes, so a count beyond that is a lie
	// that must not size an allocation.
	if k <= 0 || count > uint64(len(payload))/6 {
		return msgs, fmt.Errorf("%w: message count", errBadFrame)
	}
	payload = payload[k:]
	raft := make([]raftpb.Message, count)
	arena := msgArena{chunk: int(count)}
	uvarint := func() uint64 {
		v, k := binary.Uvarint(payload)
		if k <= 0 {
			payload = nil
			return 0
		}
		payload = payload[k:]
		return v
	}
	for i := range raft {
		group, to, from := uvarint(), uvarint(), uvarint()
		if len(payload) < 1 {
			return msgs, fmt.Errorf("%w: message %d of %d cut short", errBadFrame, i, count)
		}
		flags := payload[0]
		payload = payload[1:]
		size := uvarint()
		if payload == nil || size > uint64(len(payload)) {
			return msgs, fmt.Errorf("%w: message %d of %d cut short", errBadFrame, i, count)
		}
		if err := decodeRaftMessage(payload[:size], &raft[i], &arena, &d.scratch); err != nil {
			return msgs, fmt.Errorf("%w: message %d of %d: %w", errBadFrame, i, count, err)
		}
		payload = payload[size:]
		msgs = append(msgs, multiraft.Message{
			Group: multiraft.GroupID(group), ToNode: multiraft.NodeID(to), FromNode: multiraft.NodeID(from),
			Quiesce: flags&flagQuiesce != 0, Msg: &raft[i],
		})
	}
	if len(payload) != 0 {
		return msgs, fmt.Errorf("%w: %d bytes after the last message", errBadFrame, len(payload))
	}
	return msgs, nil
}

// serveFramed serves one framed connection whose magic was read: the
// handshake, then every frame until the connection ends. A server that is
// closed refuses the connection after the hello.
func (s *RaftServer) serveFramed(raw net.Conn, tlsCfg *tls.Config) {
	tracked := s.framed.track(raw)
	if tracked {
		defer s.framed.untrack(raw)
	} else {
		defer raw.Close()
	}
	conn, ok := s.handshakeFramed(raw, tlsCfg)
	if !ok {
		return
	}
	if !tracked {
		refuse(conn, "node is shutting down")
		return
	}
	if _, err := io.WriteString(conn, connAccepted); err != nil {
		return
	}
	_ = conn.SetDeadline(time.Time{})

	pingDone := make(chan struct{})
	defer close(pingDone)
	s.framed.wg.Add(1)
	go func() {
		defer s.framed.wg.Done()
		tick := time.NewTicker(connPingInterval)
		defer tick.Stop()
		ping := []byte{connPing}
		for {
			select {
			case <-tick.C:
				_ = conn.SetWriteDeadline(time.Now().Add(connSilenceTimeout))
				if _, err := conn.Write(ping); err != nil {
					_ = conn.Close()
					return
				}
			case <-pingDone:
				return
			}
		}
	}()

	r := bufio.NewReaderSize(conn, 64<<10)
	var header [frameHeaderBytes]byte
	var payload []byte
	var dec frameDecoder
	for {
		if _, err := io.ReadFull(r, header[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(header[:4])
		if n > maxFrameBytes {
			return
		}
		if cap(payload) < int(n) {
			payload = make([]byte, n)
		}
		payload = payload[:n]
		if _, err := io.ReadFull(r, payload); err != nil {
			return
		}
		if crc32.Checksum(payload, castagnoli) != binary.BigEndian.Uint32(header[4:]) {
			return
		}
		msgs, err := dec.decode(payload)
		if err != nil {
			return
		}
		if len(msgs) > 0 {
			s.engine.Step(msgs)
		}
		s.stats.received.Add(uint64(len(msgs)))
		clear(msgs)
		if cap(payload) > 4<<20 {
			payload = nil // do not hold a burst's buffer for ever
		}
	}
}

// handshakeFramed completes TLS when the server runs with it and reads
// the hello, refusing a connection meant for another node. It returns the
// connection to read frames from.
func (s *RaftServer) handshakeFramed(conn net.Conn, tlsCfg *tls.Config) (net.Conn, bool) {
	conn, ok := framed.ServerTLS(conn, tlsCfg)
	if !ok {
		return nil, false
	}
	var hello [helloBytes]byte
	if _, err := io.ReadFull(conn, hello[:]); err != nil {
		return nil, false
	}
	if to := multiraft.NodeID(binary.BigEndian.Uint64(hello[8:])); to != s.node {
		refuse(conn, fmt.Sprintf("connection for node %d reached node %d", to, s.node))
		return nil, false
	}
	return conn, true
}

// refuse answers a hello with a refusal and its reason.
func refuse(conn net.Conn, reason string) {
	b := binary.BigEndian.AppendUint16([]byte(connRefused), uint16(len(reason)))
	_, _ = conn.Write(append(b, reason...))
}
