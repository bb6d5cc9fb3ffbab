package rpc

import (
	"crypto/tls"
	"net"
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
	return newDemux(lis, tsConnMagic, func(c net.Conn) { s.serve(c, tlsCfg) })
}
