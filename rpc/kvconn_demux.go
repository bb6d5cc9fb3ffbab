package rpc

import (
	"crypto/tls"
	"net"

	"github.com/flotilla-kv/flotilla/internal/framed"
)

// Demux returns a listener for the node's gRPC server that yields every
// connection accepted on lis except the framed KV connections, which s
// serves itself (kvconn.go), told apart by their first eight bytes as
// RaftServer.Demux tells framed Raft connections apart; the two stack
// (s.Demux(raftServer.Demux(lis, tlsCfg), tlsCfg)). tlsCfg is the
// server's TLS configuration, the one its gRPC server uses, or nil for
// plaintext. Closing the returned listener closes lis and the connections
// still being told apart; the framed ones end with s.Close. Serve the
// result with the gRPC server, which then owns it.
func (s *KVFrameServer) Demux(lis net.Listener, tlsCfg *tls.Config) net.Listener {
	return newDemux(lis, framed.KVMagic, func(c net.Conn) { s.serve(c, tlsCfg) })
}
