package launch

import (
	"fmt"
	"path/filepath"
	"time"

	"google.golang.org/grpc"

	"github.com/flotilla-kv/flotilla/internal/tlsconfig"
)

// caValidity is how long the development CA of a TLS fleet and its
// certificates are valid: longer than any demo runs.
const caValidity = 30 * 24 * time.Hour

// fleetTLS is a TLS fleet's development CA and client configuration.
type fleetTLS struct {
	ca     *tlsconfig.DevCA
	dir    string
	client tlsconfig.Files
	cfg    *tlsconfig.Config
}

// EnableTLS makes f a mutual-TLS fleet (Options.TLS does it in New): it
// creates a development CA and a client certificate in Dir/tls, and every
// process started from now on gets --tls-cert, --tls-key and --tls-ca with
// a certificate of its own (node-N or placement-N, valid for 127.0.0.1 and
// localhost), except Plaintext nodes. Call it before starting any
// process, from the goroutine that sets the fleet up.
func (f *Fleet) EnableTLS() error {
	ca, err := tlsconfig.NewDevCA(caValidity)
	if err != nil {
		return fmt.Errorf("launch: %w", err)
	}
	dir := filepath.Join(f.Dir, "tls")
	client, err := tlsconfig.WriteDevFiles(ca, dir, "client", tlsconfig.DefaultHosts, true /* force */)
	if err != nil {
		return fmt.Errorf("launch: %w", err)
	}
	cfg, err := tlsconfig.Load(client)
	if err != nil {
		return fmt.Errorf("launch: %w", err)
	}
	f.tls = &fleetTLS{ca: ca, dir: dir, client: client, cfg: cfg}
	return nil
}

// TLSDir returns the directory of a TLS fleet's CA and certificates, or
// "" for a plaintext fleet.
func (f *Fleet) TLSDir() string {
	if f.tls == nil {
		return ""
	}
	return f.tls.dir
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

// tlsArgs returns the TLS flags of n's next start, issuing its
// certificate on the first.
func (n *Node) tlsArgs() ([]string, error) {
	if n.fleet.tls == nil || n.Plaintext {
		return nil, nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.mu.tls.Enabled() {
		name := fmt.Sprintf("node-%d", n.ID)
		if n.placementd {
			name = fmt.Sprintf("placement-%d", n.ID)
		}
		files, err := tlsconfig.WriteDevFiles(n.fleet.tls.ca, n.fleet.tls.dir, name, tlsconfig.DefaultHosts, true /* force */)
		if err != nil {
			return nil, fmt.Errorf("launch: certificate of %s: %w", n.Name, err)
		}
		n.mu.tls = files
	}
	return n.mu.tls.Args(), nil
}

// dialOption returns how Conn dials n: with the fleet's client
// certificate, or in plaintext (a plaintext fleet, a Plaintext node).
func (n *Node) dialOption() grpc.DialOption {
	if n.fleet.tls == nil || n.Plaintext {
		return (*tlsconfig.Config)(nil).DialOption()
	}
	return n.fleet.tls.cfg.DialOption()
}
