//go:build !linux

package framed

// peerClosed reports whether the server has closed the connection since
// the last answer. Off Linux it knows only of bytes already read: a
// connection the node closed while it was idle fails its next call after
// sending it, which then may have reached the node.
func (c *KVConn) peerClosed() bool { return c.r.Buffered() > 0 }
