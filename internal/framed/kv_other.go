//go:build !linux

package framed

// PeerClosed reports whether the server has closed the connection since
// the last answer; call it only between calls, as Multi is called. Off
// Linux it knows only of bytes already read: a connection the node
// closed while it was idle fails its next call after sending it, which
// then may have reached the node.
func (c *KVConn) PeerClosed() bool { return c.r.Buffered() > 0 }
