package fleet

import (
	"fmt"
	"path/filepath"
	"time"

	"google.golang.org/grpc"

	"github.com/flotilla-kv/flotilla/internal/tlsconfig"
)

// fleetTLS is a TLS fleet's development CA and client configuration.
type fleetTLS struct {
	ca     *tlsconfig.DevCA
	dir    string
	client tlsconfig.Files
	cfg    *tlsconfig.Config
}

// EnableTLS makes f a mutual-TLS fleet: it creates a development CA and a
// client certificate under f.Dir/tls, and every process started from now on
// gets --tls-cert, --tls-key and --tls-ca with a certificate of its own
// (node-N or placement-N, valid for 127.0.0.1 and localhost), except nodes
// marked Plaintext. Conn dials with the client certificate. Call it before
// starting any process; it fails the test on error.
func (f *Fleet) EnableTLS() {
	f.t.Helper()
	ca, err := tlsconfig.NewDevCA(24 * time.Hour)
	if err != nil {
		f.t.Fatal(err)
	}
	dir := filepath.Join(f.Dir, "tls")
	client, err := tlsconfig.WriteDevFiles(ca, dir, "client", tlsconfig.DefaultHosts, false)
	if err != nil {
		f.t.Fatal(err)
	}
	cfg, err := tlsconfig.Load(client)
	if err != nil {
		f.t.Fatal(err)
	}
	f.tls = &fleetTLS{ca: ca, dir: dir, client: client, cfg: cfg}
}

// ClientTLS returns the files of a TLS fleet's client certificate (to pass
// to the flotilla CLI), or the zero Files for a plaintext fleet.
func (f *Fleet) ClientTLS() tlsconfig.Files {
	if f.tls == nil {
		return tlsconfig.Files{}
	}
	return f.tls.client
}

// ClientTLSConfig returns the client configuration of a TLS fleet, or nil
// (plaintext) for a plaintext fleet; its DialOption suits grpc.NewClient
// and router.Config.DialOptions.
func (f *Fleet) ClientTLSConfig() *tlsconfig.Config {
	if f.tls == nil {
		return nil
	}
	return f.tls.cfg
}

// tlsArgs returns the TLS flags of n's next start, issuing its certificate
// on first use. Called with n.mu held.
func (n *Node) tlsArgs() []string {
	if n.fleet == nil || n.fleet.tls == nil || n.Plaintext {
		return nil
	}
	if !n.tlsFiles.Enabled() {
		name := fmt.Sprintf("node-%d", n.ID)
		if filepath.Base(n.bin) == "placementd" {
			name = fmt.Sprintf("placement-%d", n.ID)
		}
		files, err := tlsconfig.WriteDevFiles(n.fleet.tls.ca, n.fleet.tls.dir, name, tlsconfig.DefaultHosts, false)
		if err != nil {
			n.t.Fatal(err)
		}
		n.tlsFiles = files
	}
	return n.tlsFiles.Args()
}

// dialCreds returns the dial option Conn uses: the fleet's client
// certificate for a TLS process, plaintext otherwise.
func (n *Node) dialCreds() grpc.DialOption {
	if n.fleet == nil || n.fleet.tls == nil || n.Plaintext {
		return (*tlsconfig.Config)(nil).DialOption()
	}
	return n.fleet.tls.cfg.DialOption()
}
