package launch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/flotilla-kv/flotilla/internal/tlsconfig"
)

// Node is one Flotilla server of a Fleet: a shardnode or a placementd
// replica. Its Process runs the binary with the flags the fleet gives it
// (identity, addresses, data directory, peers, placement, TLS) followed
// by Args.
//
// Node's methods are safe for concurrent use. Args and Plaintext are read
// by Start: change them only while the process is stopped, from the
// goroutine that restarts it.
type Node struct {
	Process
	// ID is the node ID (--node-id) or placement replica ID (--id).
	ID uint64
	// Addr is the gRPC address; HTTP serves /readyz, /metrics (and the
	// status page on placementd).
	Addr, HTTP string
	// DataDir is the process's data directory, kept across restarts.
	DataDir string
	// Args are extra flags, after the fleet's.
	Args []string
	// Plaintext starts this process without TLS flags even in a TLS fleet,
	// as a misconfigured process would be; Conn then dials it in
	// plaintext.
	Plaintext bool

	fleet      *Fleet
	placementd bool
	etcd       string // the etcd API's address (Options.Etcd), or empty

	mu struct {
		sync.Mutex
		conn *grpc.ClientConn
		tls  tlsconfig.Files // issued on the first start in a TLS fleet
	}
}

// flags returns the command line of the node's next start.
func (n *Node) flags() ([]string, error) {
	f := n.fleet
	var args []string
	if n.placementd {
		args = []string{"--id", fmt.Sprint(n.ID), "--listen", n.Addr, "--http", n.HTTP,
			"--data-dir", n.DataDir, "--peers", peers(f.placement)}
	} else {
		args = []string{"--node-id", fmt.Sprint(n.ID), "--listen", n.Addr, "--http", n.HTTP,
			"--data-dir", n.DataDir}
		if f.opts.Peers || len(f.placement) == 0 {
			args = append(args, "--peers", peers(f.nodes))
		}
		if len(f.placement) > 0 {
			args = append(args, "--placement", strings.Join(f.PlacementAddrs(), ","))
		}
		if n.etcd != "" {
			args = append(args, "--etcd-listen", n.etcd)
		}
	}
	if f.opts.LogLevel != "" {
		args = append(args, "--log-level", f.opts.LogLevel)
	}
	tls, err := n.tlsArgs()
	if err != nil {
		return nil, err
	}
	return append(append(args, tls...), n.Args...), nil
}

// EtcdAddr returns the address where the shardnode serves the etcd v3
// API (Options.Etcd), or "" when it does not.
func (n *Node) EtcdAddr() string { return n.etcd }

// Start launches the node's process with its current flags, without
// waiting for it to be ready.
func (n *Node) Start() error {
	args, err := n.flags()
	if err != nil {
		return err
	}
	return n.Process.Start(args...)
}

// WaitReady waits until the node answers /readyz; ctx bounds the wait.
// If the process exits first it fails at once with ErrExited.
func (n *Node) WaitReady(ctx context.Context) error {
	err := WaitHTTP(ctx, "http://"+n.HTTP+"/readyz", n.Exited)
	if err != nil && !errors.Is(err, ErrExited) {
		return fmt.Errorf("launch: %s not ready: %w", n.Name, err)
	}
	return err
}

func (n *Node) waitReadyWithin(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return n.WaitReady(ctx)
}

// Restart starts a stopped node again, its data directory intact, and
// waits until it is ready (within Options.ReadyTimeout).
func (n *Node) Restart(ctx context.Context) error {
	if err := n.Start(); err != nil {
		return err
	}
	return n.waitReadyWithin(ctx, n.fleet.opts.ReadyTimeout)
}

// Conn returns a client connection to the node, with the fleet's client
// certificate in a TLS fleet (plaintext for a Plaintext node). It is
// shared and owned by the fleet: Stop and Close close it.
func (n *Node) Conn() (*grpc.ClientConn, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.mu.conn == nil {
		c, err := grpc.NewClient(n.Addr, n.dialOption())
		if err != nil {
			return nil, fmt.Errorf("launch: dialing %s: %w", n.Name, err)
		}
		n.mu.conn = c
	}
	return n.mu.conn, nil
}

func (n *Node) closeConn() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.mu.conn != nil {
		_ = n.mu.conn.Close()
		n.mu.conn = nil
	}
}
