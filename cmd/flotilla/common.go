package main

import (
	"context"
	"flag"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/flotilla-kv/flotilla/internal/keyfmt"
	"github.com/flotilla-kv/flotilla/internal/tlsconfig"
	"github.com/flotilla-kv/flotilla/router"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// common are the flags of the commands that talk to the fleet.
type common struct {
	placement   string
	nodes       string
	timeout     time.Duration
	consistency string
	tls         tlsconfig.Files // --tls-cert, --tls-key, --tls-ca: mutual TLS to placement and nodes
	out         output
}

// register adds the flags that say how to reach the fleet to cmd:
// --placement, --timeout and the TLS files; with kv --nodes (the
// key-value commands), with reads --consistency. Their environment
// variables are shared by every command.
func (c *common) register(cmd *cobra.Command, kv, reads bool) {
	fs := cmd.Flags()
	fs.StringVar(&c.placement, "placement", "127.0.0.1:7000",
		"placement service addresses, comma-separated; each is tried in turn (2s to connect), from the one that answered last")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "deadline of the whole command")
	// The TLS flags and their help are tlsconfig's, as every binary has them.
	gfs := flag.NewFlagSet("tls", flag.ContinueOnError)
	c.tls.RegisterFlags(gfs, "this client, signed by the cluster's CA ('flotilla certs' makes client.crt)")
	fs.AddGoFlagSet(gfs)
	shared := []string{"placement", "timeout", tlsconfig.FlagCert, tlsconfig.FlagKey, tlsconfig.FlagCA}
	if kv {
		fs.StringVar(&c.nodes, "nodes", "",
			"shardnode addresses, comma-separated (optional): asked for routes when no placement address answers, so the command works while placement is down")
		shared = append(shared, "nodes")
	}
	if reads {
		fs.StringVar(&c.consistency, "consistency", "linearizable", "read consistency: linearizable, lease or stale")
		_ = cmd.RegisterFlagCompletionFunc("consistency",
			cobra.FixedCompletions([]string{"linearizable", "lease", "stale"}, cobra.ShellCompDirectiveNoFileComp))
		shared = append(shared, "consistency")
	}
	for _, name := range shared {
		shareEnv(fs, name)
	}
}

// check validates the common flags: the TLS files all or none, the
// output format.
func (c *common) check(cmd *cobra.Command) error {
	if p := c.tls.Problems(); p != nil {
		return usagef("%s", strings.Join(p, "; "))
	}
	return c.out.resolve(cmd)
}

func (c *common) consistencyOpt() (router.ReadOption, error) {
	switch c.consistency {
	case "linearizable", "":
		return router.WithConsistency(router.Linearizable), nil
	case "lease":
		return router.WithConsistency(router.Lease), nil
	case "stale":
		return router.WithConsistency(router.Stale), nil
	}
	return nil, usagef("--consistency %q: want linearizable, lease or stale", c.consistency)
}

// quoteArgs renders positional arguments for a message, each cut by
// keyfmt.
func quoteArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = keyfmt.Quote([]byte(a))
	}
	return strings.Join(q, " ")
}

// counts renders the accepted numbers of arguments: "2", "2 or 3".
func counts(want []int) string {
	s := make([]string, len(want))
	for i, n := range want {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, " or ")
}

// addrList splits a comma-separated list of addresses, dropping empty ones.
func addrList(s string) []string {
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

func (c *common) router(ctx context.Context) (*router.Client, error) {
	tlsCfg, err := tlsconfig.Load(c.tls)
	if err != nil {
		return nil, err
	}
	return router.New(ctx, router.Config{
		PlacementAddresses: addrList(c.placement), NodeAddresses: addrList(c.nodes), Timeout: c.timeout,
		DialOptions: append([]grpc.DialOption{tlsCfg.DialOption()}, tracing.DialOptions()...), // client spans when tracing is on
		FramedTLS:   tlsCfg.ClientTLS(),
	})
}

// connect bounds ctx by --timeout and opens a router with it; done
// closes the router and releases the bound.
func (c *common) connect(ctx context.Context) (context.Context, *router.Client, func(), error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	r, err := c.router(ctx)
	if err != nil {
		cancel()
		return nil, nil, nil, err
	}
	return ctx, r, func() { r.Close(); cancel() }, nil
}

// askPlacement checks cmd's flags and returns a Placement client (see
// placementClient) with a context bounded by --timeout, and what closes
// both.
func (c *common) askPlacement(ctx context.Context, cmd *cobra.Command) (context.Context, pb.PlacementClient, func(), error) {
	if err := c.check(cmd); err != nil {
		return nil, nil, nil, err
	}
	pc, done, err := c.placementClient()
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	return ctx, pc, func() { cancel(); done() }, nil
}

// placementClient returns a Placement client over every --placement
// address, failing over between them (placementConn), and its closer.
func (c *common) placementClient() (pb.PlacementClient, func(), error) {
	tlsCfg, err := tlsconfig.Load(c.tls)
	if err != nil {
		return nil, nil, err
	}
	conn, err := dialPlacement(addrList(c.placement), tlsCfg.DialOption())
	if err != nil {
		return nil, nil, err
	}
	return pb.NewPlacementClient(conn), conn.Close, nil
}

// groupCmd returns a command that only groups subs: run without one of
// them, or with an unknown name, it is a usage error (exit 2) naming
// the subcommands (and their aliases) it has.
func groupCmd(use, short, long string, subs ...*cobra.Command) *cobra.Command {
	names := make([]string, len(subs))
	for i, s := range subs {
		names[i] = s.Name()
		if len(s.Aliases) > 0 {
			names[i] += " (" + strings.Join(s.Aliases, ", ") + ")"
		}
	}
	list := names[0]
	if n := len(names); n > 1 {
		list = strings.Join(names[:n-1], ", ") + " or " + names[n-1]
	}
	cmd := &cobra.Command{
		Use: use, Short: short, Long: long,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown subcommand %q", args[0])
			}
			return usagef("no subcommand given: %s", list)
		},
	}
	cmd.AddCommand(subs...)
	return cmd
}
