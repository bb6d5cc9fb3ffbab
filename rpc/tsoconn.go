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

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/internal/framed"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// Framed timestamp connections carry GetTimestamps requests from a
// shardnode to placement's timestamp oracle without gRPC, as framed Raft
// connections carry Raft's batches (raftconn.go): one TCP connection,
// opened on placementd's gRPC port and told apart by its first bytes
// (TimestampServer.Demux). On the wire:
//
//	client → server   tsConnMagic (plaintext), then TLS when the fleet
//	                  runs with it
//	server → client   tsConnAccepted
//	client → server   a request: count and write_span (4 bytes each),
//	                  then the CRC-32C of those 8 (4 bytes); all
//	                  big-endian
//	server → client   its answer: the gRPC status code (2 bytes), first
//	                  and last_write (8 bytes each), the length of the
//	                  status message (2 bytes) and the message, then the
//	                  CRC-32C of everything before it (4 bytes)
//
// Requests and answers alternate: the client has at most one request out.
// An answer with a code other than OK ends the connection, as an error
// ends a StreamTimestamps stream.
//
// Why not the gRPC stream: placementd is otherwise nearly idle, and each
// message of a gRPC stream passes through three of its goroutines (the
// HTTP/2 reader, the stream's handler, the writer loop), each hand-off a
// scheduler wake-up of an idle process. Here the connection's one
// goroutine reads a request, answers it and writes the answer itself.
const (
	// tsConnMagic opens a framed timestamp connection. Like
	// raftConnMagic it matches neither a gRPC client's plaintext preface
	// nor a TLS handshake record.
	tsConnMagic = "FLTSO\x00\x00\x01"
	// tsConnAccepted answers the magic (after TLS): long enough that no
	// other server's first bytes pass for it (see connAccepted).
	tsConnAccepted = "FLTSOOK\x01"
	// tsRequestBytes and tsAnswerHeaderBytes are the fixed parts of a
	// request (checksum included) and of an answer (checksum excluded).
	tsRequestBytes      = 12
	tsAnswerHeaderBytes = 20
	// tsMaxMessageBytes bounds an error answer's status message.
	tsMaxMessageBytes = 1 << 10
	// tsRequestTimeout bounds the server's handling of one request.
	tsRequestTimeout = 10 * time.Second
)

// ErrTimestampsUnsupported: the server closed a new framed timestamp
// connection or answered it with something else than tsConnAccepted: a
// placementd whose listener does not demultiplex them (an older build, or
// one not wired for them). The client then asks on the gRPC stream.
var ErrTimestampsUnsupported = errors.New("rpc: placement does not serve framed timestamp connections")

// TimestampConn is the client side of one framed timestamp connection.
// One goroutine at a time may call Ask; Close may be called from any.
type TimestampConn struct {
	conn net.Conn
	r    *bufio.Reader
	req  [tsRequestBytes]byte
	msg  []byte
}

// DialTimestamps opens a framed timestamp connection to the placementd at
// addr and completes its handshake; tlsCfg is the client's TLS
// configuration (nil: plaintext), its ServerName taken from addr when
// empty. ctx bounds the dial and the handshake. A server that does not
// serve them fails it with an error wrapping ErrTimestampsUnsupported.
func DialTimestamps(ctx context.Context, addr string, tlsCfg *tls.Config) (*TimestampConn, error) {
	ctx, cancel := context.WithTimeout(ctx, framed.HandshakeTimeout)
	defer cancel()
	conn, err := framed.DialMagic(ctx, addr, tsConnMagic, tlsCfg)
	if err != nil {
		return nil, tsUnsupported(err)
	}
	var b [len(tsConnAccepted)]byte
	if _, err := io.ReadFull(conn, b[:]); err != nil {
		_ = conn.Close()
		return nil, tsUnsupported(framed.UnsupportedIfClosed(err))
	}
	if string(b[:]) != tsConnAccepted {
		_ = conn.Close()
		return nil, fmt.Errorf("%w: it answered with %x", ErrTimestampsUnsupported, b[:])
	}
	_ = conn.SetDeadline(time.Time{})
	return &TimestampConn{conn: conn, r: bufio.NewReaderSize(conn, 256)}, nil
}

// tsUnsupported says ErrTimestampsUnsupported of an error wrapping
// framed.ErrUnsupported (the server closed the connection in the
// handshake).
func tsUnsupported(err error) error {
	if errors.Is(err, framed.ErrUnsupported) {
		return fmt.Errorf("%w: %w", ErrTimestampsUnsupported, err)
	}
	return err
}

// Ask sends req and returns the server's answer. An answer other than OK
// is returned as a gRPC status error with the server's code and message,
// after which the connection is done. Any other error (ctx ended, the
// connection failed, a checksum did not match) leaves the connection
// unusable: Close it. ctx bounds the exchange.
func (c *TimestampConn) Ask(ctx context.Context, req *pb.GetTimestampsRequest) (*pb.GetTimestampsResponse, error) {
	deadline, _ := ctx.Deadline()
	_ = c.conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = c.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	binary.BigEndian.PutUint32(c.req[0:], req.GetCount())
	binary.BigEndian.PutUint32(c.req[4:], req.GetWriteSpan())
	binary.BigEndian.PutUint32(c.req[8:], crc32.Checksum(c.req[:8], castagnoli))
	if _, err := c.conn.Write(c.req[:]); err != nil {
		return nil, c.ctxErr(ctx, err)
	}
	code, first, last, msg, err := readTimestampAnswer(c.r, &c.msg)
	if err != nil {
		return nil, c.ctxErr(ctx, err)
	}
	if code != codes.OK {
		return nil, status.Error(code, string(msg))
	}
	return &pb.GetTimestampsResponse{First: first, LastWrite: last}, nil
}

// ctxErr prefers ctx's error to the deadline error it caused.
func (c *TimestampConn) ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("rpc: timestamp connection: %w", context.Cause(ctx))
	}
	return fmt.Errorf("rpc: timestamp connection: %w", err)
}

// Close closes the connection.
func (c *TimestampConn) Close() error { return c.conn.Close() }

// errTimestampChecksum: an answer or request whose checksum did not match.
var errTimestampChecksum = errors.New("rpc: timestamp frame checksum mismatch")

// readTimestampAnswer reads one answer; msg is the message, in *buf.
func readTimestampAnswer(r *bufio.Reader, buf *[]byte) (code codes.Code, first, last uint64, msg []byte, err error) {
	var h [tsAnswerHeaderBytes]byte
	if _, err = io.ReadFull(r, h[:]); err != nil {
		return 0, 0, 0, nil, err
	}
	n := int(binary.BigEndian.Uint16(h[18:]))
	if n > tsMaxMessageBytes {
		return 0, 0, 0, nil, fmt.Errorf("rpc: timestamp answer with a message of %d bytes", n)
	}
	b := append((*buf)[:0], h[:]...)
	b = append(b, make([]byte, n+4)...)
	*buf = b
	if _, err = io.ReadFull(r, b[tsAnswerHeaderBytes:]); err != nil {
		return 0, 0, 0, nil, err
	}
	end := tsAnswerHeaderBytes + n
	if crc32.Checksum(b[:end], castagnoli) != binary.BigEndian.Uint32(b[end:]) {
		return 0, 0, 0, nil, errTimestampChecksum
	}
	return codes.Code(binary.BigEndian.Uint16(h[0:])), binary.BigEndian.Uint64(h[2:]), binary.BigEndian.Uint64(h[10:]), b[tsAnswerHeaderBytes:end], nil
}

// appendTimestampAnswer appends the answer resp, or err (its gRPC status)
// when err is not nil, to dst.
func appendTimestampAnswer(dst []byte, resp *pb.GetTimestampsResponse, err error) []byte {
	start := len(dst)
	code, msg := codes.OK, ""
	if err != nil {
		st := status.Convert(err)
		code, msg = st.Code(), st.Message()
		if code == codes.OK {
			code = codes.Unknown
		}
		if len(msg) > tsMaxMessageBytes {
			msg = msg[:tsMaxMessageBytes]
		}
		resp = nil
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(code))
	dst = binary.BigEndian.AppendUint64(dst, resp.GetFirst())
	dst = binary.BigEndian.AppendUint64(dst, resp.GetLastWrite())
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(msg)))
	dst = append(dst, msg...)
	return binary.BigEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

// TimestampHandler answers one request of a framed timestamp connection
// as GetTimestamps answers it; its error's gRPC status goes back to the
// client, and the connection ends. It is called from the connection's
// goroutine, so from several goroutines at once.
type TimestampHandler func(ctx context.Context, req *pb.GetTimestampsRequest) (*pb.GetTimestampsResponse, error)

// TimestampServer serves framed timestamp connections (see above) with a
// TimestampHandler: NewTimestampServer, then Demux on placementd's gRPC
// listener, and Close when the service stops. Its methods may be called
// from any goroutine.
type TimestampServer struct {
	handle TimestampHandler
	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	conns  connSet
}

// NewTimestampServer returns a server answering with h.
func NewTimestampServer(h TimestampHandler) *TimestampServer {
	s := &TimestampServer{handle: h}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// Close closes every framed timestamp connection and waits for their
// goroutines; later ones are refused (closed after their magic).
func (s *TimestampServer) Close() {
	s.cancel()
	s.conns.close()
}

// serve serves one connection whose magic was read: TLS when the server
// runs with it (tlsCfg), the acceptance, then requests until the
// connection ends or an answer is an error.
func (s *TimestampServer) serve(raw net.Conn, tlsCfg *tls.Config) {
	if !s.conns.track(raw) {
		_ = raw.Close()
		return
	}
	defer s.conns.untrack(raw)
	conn, ok := framed.ServerTLS(raw, tlsCfg)
	if !ok {
		return
	}
	if _, err := io.WriteString(conn, tsConnAccepted); err != nil {
		return
	}
	_ = conn.SetDeadline(time.Time{})
	r := bufio.NewReaderSize(conn, 256)
	var (
		in  [tsRequestBytes]byte
		out []byte
		req pb.GetTimestampsRequest
	)
	for {
		if _, err := io.ReadFull(r, in[:]); err != nil {
			return
		}
		if crc32.Checksum(in[:8], castagnoli) != binary.BigEndian.Uint32(in[8:]) {
			return
		}
		req.Count, req.WriteSpan = binary.BigEndian.Uint32(in[0:]), binary.BigEndian.Uint32(in[4:])
		ctx, cancel := context.WithTimeout(s.ctx, tsRequestTimeout)
		resp, err := s.handle(ctx, &req)
		cancel()
		out = appendTimestampAnswer(out[:0], resp, err)
		if _, werr := conn.Write(out); werr != nil || err != nil {
			return
		}
	}
}
