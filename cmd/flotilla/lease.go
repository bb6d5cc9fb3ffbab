package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/flotilla-kv/flotilla/router"
)

// maxLeaseTTL is the longest TTL, in seconds, a lease may be granted:
// lease.MaxTTL (etcd's), repeated here because importing package lease
// would link the shard engine into the client.
const maxLeaseTTL = 9_000_000_000

// leaseIDHelp says how the lease commands and put --lease read a lease ID.
const leaseIDHelp = "A lease ID is written in hexadecimal, as 'lease grant' prints it and as etcdctl takes it " +
	"(e.g. 694d5765fc71500b; a leading 0x is allowed; '10' is lease 0x10, never decimal ten)."

const leaseLong = `flotilla lease SUBCOMMAND [flags] [args]: grant, keep alive, inspect and revoke leases

A lease is a TTL the fleet counts down; keys put with 'flotilla put --lease ID'
are deleted (one ordinary delete per key, each at its own revision) when the
lease expires or is revoked, and read as absent from the moment it ended.

` + leaseIDHelp + `
A lease that does not exist (never granted, revoked or expired) exits 3 naming
it; a malformed ID or TTL is a usage error (exit 2).`

func newLeaseCmd() *cobra.Command {
	return groupCmd("lease SUBCOMMAND [flags] [args]",
		"leases, as etcdctl's: grant TTL, revoke ID, keepalive ID, timetolive ID (alias ttl), list", leaseLong,
		newLeaseGrantCmd(), newLeaseRevokeCmd(), newLeaseKeepAliveCmd(), newLeaseTimeToLiveCmd(), newLeaseListCmd())
}

// parseLeaseID parses a lease ID as etcdctl prints and takes it:
// hexadecimal, with an optional 0x. 0 is no lease, so it is refused.
func parseLeaseID(s string) (uint64, error) {
	h := strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	id, err := strconv.ParseUint(h, 16, 64)
	if err != nil {
		return 0, fmt.Errorf("lease ID %q: want a lease ID in hexadecimal, as 'flotilla lease grant' prints it (e.g. 694d5765fc71500b)", s)
	}
	if id == 0 {
		return 0, fmt.Errorf("lease ID %q: 0 is no lease", s)
	}
	return id, nil
}

// leaseIDFlag is a flag holding a lease ID in hexadecimal (parseLeaseID);
// 0 when unset.
type leaseIDFlag uint64

func (f *leaseIDFlag) String() string {
	if *f == 0 {
		return ""
	}
	return formatLeaseID(uint64(*f))
}

func (f *leaseIDFlag) Set(s string) error {
	id, err := parseLeaseID(s)
	if err != nil {
		return err
	}
	*f = leaseIDFlag(id)
	return nil
}

// formatLeaseID writes a lease ID as etcdctl does: 16 hexadecimal digits.
func formatLeaseID(id uint64) string {
	return fmt.Sprintf("%016x", id)
}

// leaseErr names lease id in err when the lease does not exist; it keeps
// ErrLeaseNotFound for errors.Is.
func leaseErr(id uint64, err error) error {
	if errors.Is(err, router.ErrLeaseNotFound) {
		return fmt.Errorf("lease %s not found: never granted, revoked or expired (%w)", formatLeaseID(id), err)
	}
	return err
}

// leaseArg parses the single ID argument of a lease subcommand; a
// malformed one is a usage error.
func leaseArg(pos []string) (uint64, error) {
	id, err := parseLeaseID(pos[0])
	if err != nil {
		return 0, &usageError{msg: err.Error()}
	}
	return id, nil
}

// leaseCmd makes a lease subcommand of one ID argument (or, with nargs 0
// or a TTL, what the subcommand says) with the common flags.
func leaseCmd(c *common, use, short, long string, nargs int) *cobra.Command {
	cmd := &cobra.Command{Use: use, Short: short, Long: long, Args: nArgs(nargs)}
	c.register(cmd, true, false)
	return cmd
}

func newLeaseGrantCmd() *cobra.Command {
	var c common
	cmd := leaseCmd(&c, "grant [flags] TTL", "grant a lease of TTL seconds and print its ID",
		"flotilla lease grant [flags] TTL: grant a lease of TTL seconds and print its ID in hexadecimal "+
			"(\"lease ID granted with TTL(Ns)\"; -w json: id as a number, id_hex, ttl, revision). "+
			"A TTL below the fleet's minimum (2s by default) is raised to it; the TTL printed is the one granted.", 1)
	c.out.register(cmd, formatSimple, "", writeFormats...)
	cmd.RunE = run(func(ctx context.Context, cmd *cobra.Command, pos []string, out io.Writer) error {
		if err := c.check(cmd); err != nil {
			return err
		}
		ttl, err := strconv.ParseInt(pos[0], 10, 64)
		if err != nil || ttl <= 0 || ttl > maxLeaseTTL {
			return usagef("TTL %q: want whole seconds, from 1 to %d", pos[0], int64(maxLeaseTTL))
		}
		ctx, r, done, err := c.connect(ctx)
		if err != nil {
			return err
		}
		defer done()
		g, err := r.Grant(ctx, ttl)
		if err != nil {
			return err
		}
		if c.out.isJSON() {
			return printJSON(out, map[string]any{"id": g.ID, "id_hex": formatLeaseID(g.ID), "ttl": g.TTL, "revision": g.Revision})
		}
		fmt.Fprintf(out, "lease %s granted with TTL(%ds)\n", formatLeaseID(g.ID), g.TTL)
		return nil
	})
	return cmd
}

func newLeaseRevokeCmd() *cobra.Command {
	var c common
	cmd := leaseCmd(&c, "revoke [flags] ID", "end lease ID now and delete every key attached to it",
		"flotilla lease revoke [flags] ID: end lease ID now and delete every key attached to it "+
			"(one delete per key, each at its own revision) before returning; prints \"lease ID revoked\" and the revision at which it ended.\n\n"+
			leaseIDHelp, 1)
	c.out.register(cmd, formatSimple, "", writeFormats...)
	cmd.RunE = run(func(ctx context.Context, cmd *cobra.Command, pos []string, out io.Writer) error {
		if err := c.check(cmd); err != nil {
			return err
		}
		id, err := leaseArg(pos)
		if err != nil {
			return err
		}
		ctx, r, done, err := c.connect(ctx)
		if err != nil {
			return err
		}
		defer done()
		w, err := r.Revoke(ctx, id)
		if err != nil {
			return leaseErr(id, err)
		}
		if c.out.isJSON() {
			return printJSON(out, map[string]any{"id": id, "id_hex": formatLeaseID(id), "ok": true, "revision": w.Revision})
		}
		fmt.Fprintf(out, "lease %s revoked (revision %d)\n", formatLeaseID(id), w.Revision)
		return nil
	})
	return cmd
}

func newLeaseKeepAliveCmd() *cobra.Command {
	var c common
	var once bool
	cmd := leaseCmd(&c, "keepalive [flags] ID", "keep lease ID alive until interrupted, printing each renewal",
		"flotilla lease keepalive [flags] ID: keep lease ID alive until interrupted (Ctrl-C, exit 0), "+
			"renewing it every third of its TTL and printing each renewal:\n"+
			"  lease ID keepalived with TTL(N)\n"+
			"With -w json, one JSON object per line. Exits 3 when the lease is gone (expired or revoked), 4 when it could not be "+
			"renewed before it would have expired. --timeout bounds connecting and, with --once, the renewal.\n\n"+leaseIDHelp, 1)
	c.out.register(cmd, formatSimple, " (json: one object a line)", writeFormats...)
	cmd.Flags().BoolVar(&once, "once", false, "renew the lease once, print its TTL and exit, instead of keeping it alive until interrupted")
	cmd.RunE = run(func(ctx context.Context, cmd *cobra.Command, pos []string, out io.Writer) error {
		if err := c.check(cmd); err != nil {
			return err
		}
		id, err := leaseArg(pos)
		if err != nil {
			return err
		}
		return keepAlive(ctx, &c, out, id, once)
	})
	return cmd
}

// keepAlive is lease keepalive of lease id.
func keepAlive(ctx context.Context, c *common, out io.Writer, id uint64, once bool) error {
	nctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	r, err := c.router(nctx)
	if err != nil {
		return err
	}
	defer r.Close()
	asJSON := c.out.isJSON()
	if once {
		ttl, err := r.KeepAliveOnce(nctx, id)
		if err != nil {
			return leaseErr(id, err)
		}
		return printKeepAlive(out, asJSON, router.KeepAliveResponse{ID: id, TTL: ttl})
	}
	ch, err := r.KeepAlive(ctx, id)
	if err != nil {
		return leaseErr(id, err)
	}
	for resp := range ch {
		if err := printKeepAlive(out, asJSON, resp); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil // interrupted
	}
	// The renewals stopped on their own: say whether the lease is gone.
	tctx, tcancel := context.WithTimeout(context.Background(), c.timeout)
	defer tcancel()
	_, err = r.TimeToLive(tctx, id, false)
	switch {
	case errors.Is(err, router.ErrLeaseNotFound):
		return fmt.Errorf("lease %s expired or was revoked while kept alive (%w)", formatLeaseID(id), err)
	case err != nil:
		return fmt.Errorf("lease %s: renewals stopped, and asking for its TTL failed (it may have expired): %w", formatLeaseID(id), err)
	}
	return fmt.Errorf("lease %s: could not renew it before it would have expired, though it still exists (%w)", formatLeaseID(id), context.DeadlineExceeded)
}

// printKeepAlive prints one renewal as etcdctl does, or as a JSON line.
func printKeepAlive(out io.Writer, asJSON bool, resp router.KeepAliveResponse) error {
	if asJSON {
		return writeJSONLine(out, map[string]any{"id": resp.ID, "id_hex": formatLeaseID(resp.ID), "ttl": resp.TTL})
	}
	_, err := fmt.Fprintf(out, "lease %s keepalived with TTL(%d)\n", formatLeaseID(resp.ID), resp.TTL)
	return err
}

func newLeaseTimeToLiveCmd() *cobra.Command {
	var c common
	var keys bool
	cmd := leaseCmd(&c, "timetolive [flags] ID", "print lease ID's granted and remaining TTL (alias: ttl)",
		"flotilla lease timetolive [flags] ID (alias: ttl): print lease ID's granted TTL and "+
			"remaining time to live in whole seconds, rounded up, as etcdctl does:\n"+
			"  lease ID granted with TTL(Ns), remaining(Ms)[, attached keys([k1 k2])]\n"+
			"-w table: a table of ID, TTL, REMAINING (and KEYS); -w json: id, id_hex, granted_ttl, ttl (and keys, in base64).\n\n"+leaseIDHelp, 1)
	cmd.Aliases = []string{"ttl"}
	c.out.register(cmd, formatSimple, "", formatSimple, formatTable, formatJSON)
	cmd.Flags().BoolVar(&keys, "keys", false, "also list the keys attached to the lease")
	cmd.RunE = run(func(ctx context.Context, cmd *cobra.Command, pos []string, out io.Writer) error {
		if err := c.check(cmd); err != nil {
			return err
		}
		id, err := leaseArg(pos)
		if err != nil {
			return err
		}
		ctx, r, done, err := c.connect(ctx)
		if err != nil {
			return err
		}
		defer done()
		l, err := r.TimeToLive(ctx, id, keys)
		if err != nil {
			return leaseErr(id, err)
		}
		ks := make([]string, len(l.Keys))
		for i, k := range l.Keys {
			ks[i] = string(k)
		}
		switch c.out.format {
		case formatJSON:
			m := map[string]any{"id": l.ID, "id_hex": formatLeaseID(l.ID), "ttl": l.TTL, "granted_ttl": l.GrantedTTL}
			if keys {
				b := make([]string, len(l.Keys))
				for i, k := range l.Keys {
					b[i] = b64(k)
				}
				m["keys"] = b
			}
			return printJSON(out, m)
		case formatTable:
			header, row := "ID\tTTL\tREMAINING", []string{formatLeaseID(l.ID), fmt.Sprintf("%ds", l.GrantedTTL), fmt.Sprintf("%ds", l.TTL)}
			if keys {
				header += "\tKEYS"
				row = append(row, quoteArgs(ks))
			}
			table(out, header, [][]string{row})
			return nil
		}
		fmt.Fprintf(out, "lease %s granted with TTL(%ds), remaining(%ds)", formatLeaseID(l.ID), l.GrantedTTL, l.TTL)
		if keys {
			fmt.Fprintf(out, ", attached keys(%v)", ks)
		}
		fmt.Fprintln(out)
		return nil
	})
	return cmd
}

func newLeaseListCmd() *cobra.Command {
	var c common
	cmd := leaseCmd(&c, "list [flags]", "list the leases that exist",
		"flotilla lease list [flags]: list the IDs of the leases that exist, in ID order, as etcdctl does "+
			"(\"found N leases\", then one ID a line; -w table: a table of IDs; -w json: leases as numbers and leases_hex); "+
			"a lease being ended may still be listed", 0)
	c.out.register(cmd, formatSimple, "", formatSimple, formatTable, formatJSON)
	cmd.RunE = run(func(ctx context.Context, cmd *cobra.Command, _ []string, out io.Writer) error {
		if err := c.check(cmd); err != nil {
			return err
		}
		ctx, r, done, err := c.connect(ctx)
		if err != nil {
			return err
		}
		defer done()
		ids, err := r.Leases(ctx)
		if err != nil {
			return err
		}
		hex := make([]string, len(ids))
		for i, id := range ids {
			hex[i] = formatLeaseID(id)
		}
		switch c.out.format {
		case formatJSON:
			return printJSON(out, map[string]any{"leases": append([]uint64{}, ids...), "leases_hex": hex})
		case formatTable:
			rows := make([][]string, len(ids))
			for i, h := range hex {
				rows[i] = []string{h, strconv.FormatUint(ids[i], 10)}
			}
			table(out, "ID\tID (DECIMAL)", rows)
			return nil
		}
		fmt.Fprintf(out, "found %d leases\n", len(ids))
		for _, h := range hex {
			fmt.Fprintln(out, h)
		}
		return nil
	})
	return cmd
}

// putWithTTL is put --ttl: the key on a fresh lease of ttl. A lease
// granted for a put that then failed is named in the error, so that it
// can be revoked.
func putWithTTL(ctx context.Context, r *router.Client, key, value []byte, ttl time.Duration) (router.LeaseGrant, router.WriteResult, error) {
	g, w, err := r.PutWithTTL(ctx, key, value, ttl)
	if err != nil && g.ID != 0 {
		return g, w, fmt.Errorf("put on lease %s (granted for it, TTL %ds): %w", formatLeaseID(g.ID), g.TTL, leaseErr(g.ID, err))
	}
	return g, w, err
}

// Type implements pflag.Value.
func (*leaseIDFlag) Type() string { return "leaseID" }
