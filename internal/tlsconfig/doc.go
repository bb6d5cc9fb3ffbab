// Package tlsconfig is Flotilla's mutual TLS: the --tls-cert, --tls-key
// and --tls-ca flags every binary takes, loading and checking those PEM
// files, the server and client *tls.Config built from them, gRPC
// credentials, and a development CA for tests, the demo and
// 'flotilla certs'.
//
// # Model
//
// One CA signs every certificate of a cluster. Every process presents its
// own certificate and verifies its peer's:
//
//   - servers (shardnode, placementd) require a client certificate and
//     verify it against the CA (tls.RequireAndVerifyClientCert);
//   - clients (the raft transport, heartbeats to placement, placement's
//     Admin calls to nodes, KV forwarding, the router, the CLI) present
//     theirs and verify the server's against the CA and the dialled host
//     name, so certificates carry the hosts they are reached at as SANs;
//   - TLS 1.3 is the minimum; a plaintext or TLS 1.2 client is refused at
//     the handshake and never reaches a handler.
//
// Any certificate the CA signed is trusted for every role: a CLI client
// certificate could also speak the raft protocol. Restricting roles by
// subject is left for later.
//
// Certificates are read once at start; a new certificate needs a restart
// (no hot reload).
//
// # HTTP endpoints stay plaintext
//
// The HTTP servers (/metrics, /healthz, /readyz, placement's status page,
// pprof) are not TLS. They listen on their own --http address, carry no
// write operation, and are scraped and probed by tools (Prometheus,
// container and orchestrator health checks) that are simpler to run
// without client certificates. Bind --http to loopback or a management
// network, or disable it with --http "", where that exposure matters:
// the status page shows shard boundaries, which are user keys.
//
// # Use
//
//	var files tlsconfig.Files
//	files.RegisterFlags(fs, "this node")
//	// after parsing: report files.Problems() with the other flag problems
//	cfg, err := tlsconfig.Load(files) // nil, nil when no flag is set
//	srv := grpc.NewServer(cfg.ServerOption())
//	conn, err := grpc.NewClient(addr, cfg.DialOption())
//
// A nil *Config stands for plaintext, so the same calls serve both cases.
//
// # Development certificates
//
// NewDevCA makes an ECDSA P-256 CA in memory; Issue signs a certificate
// usable as server and client; WriteDevFiles and WriteFiles write them
// (keys 0600) in the layout of DevFiles and refuse to overwrite unless
// forced. Only the standard library's crypto is used.
package tlsconfig
