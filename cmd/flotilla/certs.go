package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/flotilla-kv/flotilla/internal/cli"
	"github.com/flotilla-kv/flotilla/internal/tlsconfig"
)

const certsSummary = `flotilla certs --dir DIR [flags]: create a development CA and certificates for
mutual TLS: DIR/ca.crt (and ca.key), DIR/node-N.crt/.key for each shardnode,
DIR/placement-N.crt/.key for each placementd replica, DIR/client.crt/.key for
the CLI and other clients. Keys are ECDSA P-256, written 0600. Each
certificate serves and dials, and is valid for 127.0.0.1, ::1, localhost and
each of --hosts. Existing files are never overwritten unless --force. For
development and tests; production certificates should come from your own PKI.`

type certsConfig struct {
	dir        string
	nodes      int
	placements int
	hosts      string
	validFor   time.Duration
	force      bool
}

func newCertsCmd() *cobra.Command {
	var c certsConfig
	cmd := &cobra.Command{
		Use:   "certs --dir DIR [flags]",
		Short: "create a development CA and certificates for mutual TLS (--tls-cert, --tls-key, --tls-ca)",
		Long:  certsSummary,
		Args:  noArgs,
	}
	fs := cmd.Flags()
	fs.StringVar(&c.dir, "dir", "", "directory to write the CA and certificates into; created if missing (required)")
	fs.IntVar(&c.nodes, "nodes", 3, "shardnode certificates to create (node-1 .. node-N)")
	fs.IntVar(&c.placements, "placements", 3, "placementd replica certificates to create (placement-1 .. placement-N)")
	fs.StringVar(&c.hosts, "hosts", "", "extra host names or IP addresses the node and placement certificates are valid for, comma-separated (the addresses peers and clients dial)")
	fs.DurationVar(&c.validFor, "valid-for", 365*24*time.Hour, "validity of the CA and every certificate")
	fs.BoolVar(&c.force, "force", false, "replace existing files")
	cmd.RunE = run(func(_ context.Context, _ *cobra.Command, _ []string, out io.Writer) error {
		return runCerts(c, out)
	})
	return cmd
}

// runCerts is flotilla certs with the flags c.
func runCerts(c certsConfig, out io.Writer) error {
	var p cli.Problems
	if c.dir == "" {
		p.Addf("--dir is required")
	}
	if c.nodes < 0 || c.placements < 0 {
		p.Addf("--nodes and --placements must not be negative")
	}
	if c.validFor <= 0 {
		p.Addf("--valid-for must be positive, got %s", c.validFor)
	}
	if err := p.Err(); err != nil {
		return &usageError{msg: err.Error()}
	}
	dir, err := filepath.Abs(c.dir)
	if err != nil {
		return err
	}
	hosts := append([]string(nil), tlsconfig.DefaultHosts...)
	for _, h := range strings.Split(c.hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hosts = append(hosts, h)
		}
	}

	ca, err := tlsconfig.NewDevCA(c.validFor)
	if err != nil {
		return err
	}
	var names []string
	for i := 1; i <= c.nodes; i++ {
		names = append(names, fmt.Sprintf("node-%d", i))
	}
	for i := 1; i <= c.placements; i++ {
		names = append(names, fmt.Sprintf("placement-%d", i))
	}
	files := []tlsconfig.File{
		{Path: filepath.Join(dir, "ca.crt"), Data: ca.CertPEM, Mode: 0o644},
		{Path: filepath.Join(dir, "ca.key"), Data: ca.KeyPEM, Mode: 0o600},
	}
	issue := func(name string, hosts []string) error {
		cert, key, err := ca.Issue(name, hosts)
		if err != nil {
			return err
		}
		f := tlsconfig.DevFiles(dir, name)
		files = append(files, tlsconfig.File{Path: f.Cert, Data: cert, Mode: 0o644}, tlsconfig.File{Path: f.Key, Data: key, Mode: 0o600})
		return nil
	}
	for _, name := range names {
		if err := issue(name, slices.Concat(hosts, []string{name})); err != nil {
			return err
		}
	}
	if err := issue("client", nil); err != nil {
		return err
	}
	// Every file is checked before any is written: a refusal writes nothing.
	if err := tlsconfig.WriteFiles(files, c.force); err != nil {
		if errors.Is(err, tlsconfig.ErrExists) {
			return fmt.Errorf("%w\n(pass --force to replace them)", err)
		}
		return err
	}

	fmt.Fprintf(out, "wrote a development CA and %d certificates to %s, valid for %s; hosts: %s\n\n",
		len(names)+1, dir, c.validFor, strings.Join(hosts, ", "))
	flags := func(name string) string { return strings.Join(tlsconfig.DevFiles(dir, name).Args(), " ") }
	for i := 1; i <= c.placements; i++ {
		fmt.Fprintf(out, "placementd --id %d ...  %s\n", i, flags(fmt.Sprintf("placement-%d", i)))
	}
	for i := 1; i <= c.nodes; i++ {
		fmt.Fprintf(out, "shardnode --node-id %d ...  %s\n", i, flags(fmt.Sprintf("node-%d", i)))
	}
	client := tlsconfig.DevFiles(dir, "client")
	fmt.Fprintf(out, "flotilla COMMAND ...  %s\n\nor, for the CLI, in the environment:\n", flags("client"))
	fmt.Fprintf(out, "  export %s=%s %s=%s %s=%s\n", cli.EnvName(tlsconfig.FlagCert), client.Cert,
		cli.EnvName(tlsconfig.FlagKey), client.Key, cli.EnvName(tlsconfig.FlagCA), client.CA)
	return nil
}
