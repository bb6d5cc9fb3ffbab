//go:build linux

package framed

import "syscall"

// PeerClosed reports whether the server has closed the connection, or
// sent bytes no call asked for, since the last answer: a connection kept
// idle in a client's pool across a node's restart. One non-blocking peek
// at the socket, so a call on such a connection fails before sending
// anything, as a surely unsent call, instead of after, as a call that may
// have reached the node. Multi calls it first; call it only between
// calls, as Multi is called.
func (c *KVConn) PeerClosed() bool {
	if c.r.Buffered() > 0 {
		return true
	}
	sc, ok := c.raw.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	closed := false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		_, _, perr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		// nil: the peer's FIN (0 bytes) or unasked-for bytes; EAGAIN:
		// nothing to read, the connection is open; any other error
		// (ECONNRESET) ended it.
		closed = perr != syscall.EAGAIN && perr != syscall.EINTR
		return true
	})
	return closed || err != nil
}
