package framed

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
	"os"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// Framed KV connections carry KV.Multi calls from a router to a shardnode
// without gRPC, as framed Raft connections carry Raft's batches
// (rpc/raftconn.go): a TCP connection opened on the node's gRPC port and
// told apart by its first bytes (rpc.KVFrameServer.Demux). On the wire:
//
//	client → server   KVMagic and the client's mode, kvModeTLS or
//	                  kvModePlain (plaintext)
//	server → client   kvVerdictYes when the mode is the server's own,
//	                  else kvVerdictNo and the connection ends; a
//	                  client that finds security other than its own
//	                  learns it at once, before any TLS
//	both              TLS when the mode is kvModeTLS
//	server → client   kvConnAccepted
//	client → server   a request: the length of the MultiRequest (4
//	                  bytes), the call's remaining time in nanoseconds (8
//	                  bytes, 0: none), the MultiRequest (protobuf), then
//	                  the CRC-32C of everything before it (4 bytes)
//	server → client   its answer: the length of the body (4 bytes), the
//	                  gRPC status code (2 bytes), the body (a
//	                  MultiResponse when the code is OK, else the full
//	                  status as a google.rpc.Status with its details),
//	                  then the CRC-32C of everything before it (4 bytes)
//
// All integers are big-endian. Requests and answers alternate: a
// connection carries one call at a time, and a client keeps a connection
// per call it has in flight (the router keeps one per coalesced batch in
// flight to a node). An answer with an error status leaves the
// connection usable: it is the call's outcome, as a gRPC status is.
//
// Why not gRPC: a gRPC call passes through three goroutines on the
// server (the HTTP/2 reader, the call's handler, the writer loop) and as
// many on the client, each hand-off a scheduler wake-up, plus HTTP/2's
// headers and flow control. At 100 readers that was about half of a
// read call's server CPU (bench/README.md, "The read path at 100
// readers"). Here the connection's one goroutine on each side reads,
// handles and writes. gRPC stays for every other call and for calls that
// carry a sampled trace, so their spans run unbroken.
//
// What a framed call does not carry: gRPC metadata (a KV call from a
// router carries none; forwarded calls between nodes stay on gRPC) and
// cancellation apart from the deadline: a client that gives up closes
// its connection, and the server's handler runs to its deadline.
const (
	// KVMagic opens a framed KV connection. Like the Raft transport's
	// magic it matches neither a gRPC client's plaintext preface nor a TLS
	// handshake record.
	KVMagic = "FLKVM\x00\x00\x01"
	// kvModeTLS and kvModePlain follow the magic: the client's security.
	kvModeTLS   = 'T'
	kvModePlain = 'P'
	// kvVerdictYes and kvVerdictNo answer the mode, in plaintext.
	kvVerdictYes = 'Y'
	kvVerdictNo  = 'N'
	// kvConnAccepted ends the server's handshake (after TLS): long enough
	// that no other server's first bytes pass for it (see connAccepted).
	kvConnAccepted = "FLKVMOK\x01"
	// kvRequestHeaderBytes and kvAnswerHeaderBytes are the fixed parts
	// before a request's and an answer's protobuf.
	kvRequestHeaderBytes = 12
	kvAnswerHeaderBytes  = 6
	// MaxKVRequestBytes bounds a request's MultiRequest, as
	// serve.MaxMessageBytes bounds a gRPC request (a test keeps them
	// equal; serve is not imported, since it brings net/http/pprof's
	// handlers into the router's users).
	MaxKVRequestBytes = 16 << 20
	// kvMaxAnswerBytes bounds an answer's body on the client, as the
	// router's gRPC receive limit does.
	kvMaxAnswerBytes = 64 << 20
)

// ErrKVUnsupported: the server closed a new framed KV connection or
// answered it with something else than the handshake: a shardnode whose
// listener does not demultiplex them (an older build). The client then
// calls over gRPC.
var ErrKVUnsupported = errors.New("framed: node does not serve framed KV connections")

// ErrKVMode: the server serves framed KV connections with the
// other security (TLS against plaintext). A client that secures its gRPC
// connections in a way the framed ones do not know of meets it; its calls
// then go over gRPC, whose credentials decide.
var ErrKVMode = errors.New("framed: node serves framed KV connections with other security (TLS or plaintext)")

// errKVChecksum: a request or answer whose checksum did not match.
var errKVChecksum = errors.New("framed: KV checksum mismatch")

// errKVAnswerTooLarge: an answer above the client's limit
// (kvMaxAnswerBytes).
var errKVAnswerTooLarge = errors.New("framed: KV answer too large")

// AcceptKV completes the server's side of a framed KV connection's
// handshake on raw, whose magic was read: the client's mode and the
// verdict, TLS with tlsCfg unless it is nil, the acceptance. It returns
// the connection to serve calls on, or false when the handshake failed
// or the client's mode is not the server's (the client is told so).
func AcceptKV(raw net.Conn, tlsCfg *tls.Config) (net.Conn, bool) {
	_ = raw.SetDeadline(time.Now().Add(HandshakeTimeout))
	var mode [1]byte
	if _, err := io.ReadFull(raw, mode[:]); err != nil {
		return nil, false
	}
	own := byte(kvModePlain)
	if tlsCfg != nil {
		own = kvModeTLS
	}
	if mode[0] != own {
		_, _ = raw.Write([]byte{kvVerdictNo})
		return nil, false
	}
	if _, err := raw.Write([]byte{kvVerdictYes}); err != nil {
		return nil, false
	}
	conn, ok := ServerTLS(raw, tlsCfg)
	if !ok {
		return nil, false
	}
	if _, err := io.WriteString(conn, kvConnAccepted); err != nil {
		return nil, false
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, true
}

// KVConn is the client side of one framed KV connection. One goroutine at
// a time may call Multi; Close may be called from any.
type KVConn struct {
	conn net.Conn
	// raw is the TCP connection under conn (conn itself in plaintext),
	// which PeerClosed looks at.
	raw net.Conn
	r   *bufio.Reader
	buf []byte
	// broken is set once a call left the connection unusable.
	broken bool
}

// DialKV opens a framed KV connection to the shardnode at addr with dial
// (nil: the system's dialer) and completes its handshake; tlsCfg is the
// client's TLS configuration (nil: plaintext), its ServerName taken from
// addr when empty. ctx bounds the dial and the handshake. A server that does not serve them fails it with
// an error wrapping ErrKVUnsupported, one with the other security
// with ErrKVMode.
func DialKV(ctx context.Context, addr string, tlsCfg *tls.Config, dial DialFunc) (*KVConn, error) {
	ctx, cancel := context.WithTimeout(ctx, HandshakeTimeout)
	defer cancel()
	mode := byte(kvModePlain)
	if tlsCfg != nil {
		mode = kvModeTLS
	}
	raw, err := dialRaw(ctx, dial, addr, KVMagic+string(mode))
	if err != nil {
		return nil, kvUnsupported(err)
	}
	var verdict [1]byte
	if _, err := io.ReadFull(raw, verdict[:]); err != nil {
		_ = raw.Close()
		return nil, kvUnsupported(UnsupportedIfClosed(err))
	}
	switch verdict[0] {
	case kvVerdictYes:
	case kvVerdictNo:
		_ = raw.Close()
		return nil, ErrKVMode
	default:
		_ = raw.Close()
		return nil, fmt.Errorf("%w: it answered with %x", ErrKVUnsupported, verdict[:])
	}
	conn, err := clientTLS(ctx, raw, addr, tlsCfg)
	if err != nil {
		return nil, kvUnsupported(err)
	}
	var b [len(kvConnAccepted)]byte
	if _, err := io.ReadFull(conn, b[:]); err != nil {
		_ = conn.Close()
		return nil, kvUnsupported(UnsupportedIfClosed(err))
	}
	if string(b[:]) != kvConnAccepted {
		_ = conn.Close()
		return nil, fmt.Errorf("%w: it answered with %x", ErrKVUnsupported, b[:])
	}
	_ = conn.SetDeadline(time.Time{})
	return &KVConn{conn: conn, raw: raw, r: bufio.NewReaderSize(conn, 16<<10)}, nil
}

// kvUnsupported says ErrKVUnsupported of an error wrapping
// ErrUnsupported (the server closed the connection in the
// handshake).
func kvUnsupported(err error) error {
	if errors.Is(err, ErrUnsupported) {
		return fmt.Errorf("%w: %w", ErrKVUnsupported, err)
	}
	return err
}

// Multi sends req and returns the server's answer: its MultiResponse, or
// the status error the server answered with (code, message and details).
// The connection stays usable after both.
//
// Any other error leaves the connection unusable (Broken; Close it): ctx ended
// (its status error: Canceled or DeadlineExceeded), the connection failed
// or a checksum did not match (Unavailable). sent reports whether the
// request may have reached the server: false when the whole request was
// not written, in particular when the server had closed the connection
// before the call (PeerClosed), so that a write that failed so surely did
// not apply.
func (c *KVConn) Multi(ctx context.Context, req *pb.MultiRequest) (resp *pb.MultiResponse, sent bool, err error) {
	if err := ctx.Err(); err != nil {
		return nil, false, status.FromContextError(err).Err()
	}
	// The connection's deadline is the call's, and ctx's end sets one in
	// the past. That must not outlive the call: a late one would fail the
	// next call on the connection, so the call waits for it to be set if
	// it started.
	var timeout int64
	deadline, ok := ctx.Deadline()
	if ok {
		timeout = max(int64(time.Until(deadline)), 1)
	}
	_ = c.conn.SetDeadline(deadline)
	if ctx.Done() != nil {
		fired := make(chan struct{})
		stop := context.AfterFunc(ctx, func() {
			_ = c.conn.SetDeadline(time.Unix(1, 0))
			close(fired)
		})
		defer func() {
			if !stop() {
				<-fired
			}
		}()
	}
	if c.broken || c.PeerClosed() {
		c.broken = true
		return nil, false, status.Error(codes.Unavailable, "framed: KV connection closed by the node")
	}

	b := append(c.buf[:0], make([]byte, kvRequestHeaderBytes)...)
	b, err = proto.MarshalOptions{}.MarshalAppend(b, req)
	if err != nil {
		return nil, false, status.Errorf(codes.Internal, "framed: encoding a Multi request: %v", err)
	}
	if len(b)-kvRequestHeaderBytes > MaxKVRequestBytes {
		return nil, false, status.Errorf(codes.ResourceExhausted, "framed: a Multi request of %d bytes, at most %d", len(b)-kvRequestHeaderBytes, MaxKVRequestBytes)
	}
	binary.BigEndian.PutUint32(b[0:], uint32(len(b)-kvRequestHeaderBytes))
	binary.BigEndian.PutUint64(b[4:], uint64(timeout))
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	c.buf = b
	if n, err := c.conn.Write(b); err != nil {
		// The server acts on a whole request only, checksum included.
		return nil, n == len(b), c.failed(ctx, err)
	}
	code, body, err := ReadKVAnswer(c.r, &c.buf)
	if errors.Is(err, errKVAnswerTooLarge) {
		// Its body is left unread: the connection is done with. The
		// status is the one gRPC gives an answer over its receive limit.
		c.broken = true
		return nil, true, status.Error(codes.ResourceExhausted, err.Error())
	}
	if err != nil {
		return nil, true, c.failed(ctx, err)
	}
	if cap(c.buf) > 1<<20 {
		defer func() { c.buf = nil }() // one large call does not pin its buffer
	}
	if code != codes.OK {
		st := &spb.Status{}
		if err := proto.Unmarshal(body, st); err != nil {
			c.broken = true
			return nil, true, status.Errorf(codes.Internal, "framed: decoding a framed KV status: %v", err)
		}
		st.Code = int32(code)
		return nil, true, status.ErrorProto(st)
	}
	resp = &pb.MultiResponse{}
	if err := proto.Unmarshal(body, resp); err != nil {
		c.broken = true
		return nil, true, status.Errorf(codes.Internal, "framed: decoding a Multi response: %v", err)
	}
	return resp, true, nil
}

// Broken reports whether a call left the connection unusable: its error
// was not the server's answer. Close it then.
func (c *KVConn) Broken() bool { return c.broken }

// failed is the status of a call whose connection failed: ctx's, when it
// ended, else Unavailable. The connection is then unusable.
func (c *KVConn) failed(ctx context.Context, err error) error {
	c.broken = true
	if ctx.Err() != nil {
		return status.FromContextError(ctx.Err()).Err()
	}
	// The connection's deadline is ctx's, and may pass before ctx's own
	// timer ends it.
	if d, ok := ctx.Deadline(); ok && errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(d) {
		return status.FromContextError(context.DeadlineExceeded).Err()
	}
	return status.Errorf(codes.Unavailable, "framed: KV connection: %v", err)
}

// Close closes the connection.
func (c *KVConn) Close() error { return c.conn.Close() }

// ReadKVAnswer reads one answer into *buf; body is the protobuf after its
// code.
func ReadKVAnswer(r *bufio.Reader, buf *[]byte) (code codes.Code, body []byte, err error) {
	var h [kvAnswerHeaderBytes]byte
	if _, err = io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := int(binary.BigEndian.Uint32(h[0:]))
	if n > kvMaxAnswerBytes {
		return 0, nil, fmt.Errorf("%w: %d bytes, at most %d", errKVAnswerTooLarge, n, kvMaxAnswerBytes)
	}
	b := append((*buf)[:0], h[:]...)
	b = append(b, make([]byte, n+4)...)
	*buf = b
	if _, err = io.ReadFull(r, b[kvAnswerHeaderBytes:]); err != nil {
		return 0, nil, err
	}
	end := kvAnswerHeaderBytes + n
	if crc32.Checksum(b[:end], castagnoli) != binary.BigEndian.Uint32(b[end:]) {
		return 0, nil, errKVChecksum
	}
	return codes.Code(binary.BigEndian.Uint16(h[4:])), b[kvAnswerHeaderBytes:end], nil
}

// AppendKVAnswer appends the answer resp, or err's full status when err
// is not nil, to dst.
func AppendKVAnswer(dst []byte, resp *pb.MultiResponse, err error) ([]byte, error) {
	start := len(dst)
	dst = append(dst, make([]byte, kvAnswerHeaderBytes)...)
	code := codes.OK
	var merr error
	if err != nil {
		st := status.Convert(err).Proto()
		code = codes.Code(st.GetCode())
		if code == codes.OK {
			code, st.Code = codes.Unknown, int32(codes.Unknown)
		}
		dst, merr = proto.MarshalOptions{}.MarshalAppend(dst, st)
	} else {
		dst, merr = proto.MarshalOptions{}.MarshalAppend(dst, resp)
	}
	if merr != nil {
		return dst[:start], merr
	}
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-kvAnswerHeaderBytes))
	binary.BigEndian.PutUint16(dst[start+4:], uint16(code))
	return binary.BigEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli)), nil
}

// ReadKVRequest reads and decodes one request, in *buf. A request that
// cannot be read, is too large, or whose checksum does not match is an
// error, which ends the connection: the stream can no longer be trusted
// to be in step. A whole request whose protobuf does not decode is a nil
// request, which the server answers with InvalidArgument.
func ReadKVRequest(r *bufio.Reader, buf *[]byte) (*pb.MultiRequest, time.Duration, error) {
	var h [kvRequestHeaderBytes]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, 0, err
	}
	n := int(binary.BigEndian.Uint32(h[0:]))
	if n > MaxKVRequestBytes {
		return nil, 0, fmt.Errorf("framed: KV request of %d bytes, at most %d", n, MaxKVRequestBytes)
	}
	b := append((*buf)[:0], h[:]...)
	b = append(b, make([]byte, n+4)...)
	*buf = b
	if _, err := io.ReadFull(r, b[kvRequestHeaderBytes:]); err != nil {
		return nil, 0, err
	}
	end := kvRequestHeaderBytes + n
	if crc32.Checksum(b[:end], castagnoli) != binary.BigEndian.Uint32(b[end:]) {
		return nil, 0, errKVChecksum
	}
	req := &pb.MultiRequest{}
	timeout := max(time.Duration(binary.BigEndian.Uint64(h[4:])), 0)
	if err := proto.Unmarshal(b[kvRequestHeaderBytes:end], req); err != nil {
		return nil, timeout, nil
	}
	return req, timeout, nil
}
