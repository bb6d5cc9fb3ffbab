package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/flotilla-kv/flotilla/router"
)

// maxLeaseTTL is the longest TTL, in seconds, a lease may be granted:
// lease.MaxTTL (etcd's), repeated here because importing package lease
// would link the shard engine into the client.
const maxLeaseTTL = 9_000_000_000

// leaseIDHelp says how the lease commands and put --lease read a lease ID.
const leaseIDHelp = "A lease ID is written in hexadecimal, as 'lease grant' prints it and as etcdctl takes it " +
	"(e.g. 694d5765fc71500b; a leading 0x is allowed; '10' is lease 0x10, never decimal ten)."

const leaseUsage = `flotilla lease SUBCOMMAND [flags] [args]: grant, keep alive, inspect and revoke leases

A lease is a TTL the fleet counts down; keys put with 'flotilla put --lease ID'
are deleted (one ordinary delete per key, each at its own revision) when the
lease expires or is revoked, and read as absent from the moment it ended.

Subcommands (the subcommand comes first; its flags may come before or after its arguments):
  grant TTL                  grant a lease of TTL seconds (a TTL below the fleet's minimum, 2s by default, is raised to it):
                             prints "lease ID granted with TTL(Ns)"
  revoke ID                  end lease ID now and delete every key attached to it
  keepalive ID               keep lease ID alive until interrupted, printing each renewal
                             ("lease ID keepalived with TTL(N)"); --once: renew once and exit
  timetolive ID [--keys]     print lease ID's granted and remaining TTL (--keys: and its keys); alias: ttl
  list                       list the leases that exist

` + leaseIDHelp + `
A lease that does not exist (never granted, revoked or expired) exits 1 naming
it; a malformed ID or TTL is a usage error (exit 2).

Run 'flotilla lease SUBCOMMAND --help' for its flags.`

// leaseCommands are the subcommands of flotilla lease.
var leaseCommands = []command{
	{"grant", "flotilla lease grant [flags] TTL", runLeaseGrant},
	{"revoke", "flotilla lease revoke [flags] ID", runLeaseRevoke},
	{"keepalive", "flotilla lease keepalive [flags] ID", runLeaseKeepAlive},
	{"timetolive", "flotilla lease timetolive [flags] ID", runLeaseTimeToLive},
	{"ttl", "flotilla lease ttl [flags] ID (alias of timetolive)", runLeaseTimeToLive},
	{"list", "flotilla lease list [flags]", runLeaseList},
}

// runLease runs the subcommand named by args[0].
func runLease(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, leaseUsage)
		return errUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(os.Stderr, leaseUsage)
		return flag.ErrHelp
	}
	for _, c := range leaseCommands {
		if c.name == args[0] {
			return c.run(ctx, args[1:], out)
		}
	}
	fmt.Fprintf(os.Stderr, "flotilla lease: unknown subcommand %q (the subcommand comes before the flags)\n\n%s\n", args[0], leaseUsage)
	return errUsage
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

// usageErr prints msg and the usage of fs, and returns errUsage.
func usageErr(fs *flag.FlagSet, msg string) error {
	fmt.Fprintf(os.Stderr, "%s\n\n", msg)
	fs.Usage()
	return errUsage
}

// leaseErr names lease id in err when the lease does not exist; it keeps
// ErrLeaseNotFound for errors.Is.
func leaseErr(id uint64, err error) error {
	if errors.Is(err, router.ErrLeaseNotFound) {
		return fmt.Errorf("lease %s not found: never granted, revoked or expired (%w)", formatLeaseID(id), err)
	}
	return err
}

// parseLeaseArgs parses the flags and the single ID argument of a lease
// subcommand.
func parseLeaseArgs(fs *flag.FlagSet, args []string, summary string) (uint64, error) {
	pos, err := parse(fs, args, summary+"\n\n"+leaseIDHelp, 1)
	if err != nil {
		return 0, err
	}
	id, err := parseLeaseID(pos[0])
	if err != nil {
		return 0, usageErr(fs, err.Error())
	}
	return id, nil
}

func runLeaseGrant(ctx context.Context, args []string, out io.Writer) error {
	var c common
	fs := kvFlags(newFlags("lease grant", &c, false), &c)
	pos, err := parse(fs, args, "flotilla lease grant [flags] TTL: grant a lease of TTL seconds and print its ID in hexadecimal "+
		"(\"lease ID granted with TTL(Ns)\"; --json: id as a number, id_hex, ttl, revision). "+
		"A TTL below the fleet's minimum (2s by default) is raised to it; the TTL printed is the one granted.", 1)
	if err != nil {
		return err
	}
	ttl, err := strconv.ParseInt(pos[0], 10, 64)
	if err != nil || ttl <= 0 || ttl > maxLeaseTTL {
		return usageErr(fs, fmt.Sprintf("TTL %q: want whole seconds, from 1 to %d", pos[0], int64(maxLeaseTTL)))
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
	if c.json {
		return printJSON(out, map[string]any{"id": g.ID, "id_hex": formatLeaseID(g.ID), "ttl": g.TTL, "revision": g.Revision})
	}
	fmt.Fprintf(out, "lease %s granted with TTL(%ds)\n", formatLeaseID(g.ID), g.TTL)
	return nil
}

func runLeaseRevoke(ctx context.Context, args []string, out io.Writer) error {
	var c common
	fs := kvFlags(newFlags("lease revoke", &c, false), &c)
	id, err := parseLeaseArgs(fs, args, "flotilla lease revoke [flags] ID: end lease ID now and delete every key attached to it "+
		"(one delete per key, each at its own revision) before returning; prints \"lease ID revoked\" and the revision at which it ended")
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
	if c.json {
		return printJSON(out, map[string]any{"id": id, "id_hex": formatLeaseID(id), "ok": true, "revision": w.Revision})
	}
	fmt.Fprintf(out, "lease %s revoked (revision %d)\n", formatLeaseID(id), w.Revision)
	return nil
}

func runLeaseKeepAlive(ctx context.Context, args []string, out io.Writer) error {
	var c common
	fs := kvFlags(newFlags("lease keepalive", &c, false), &c)
	once := fs.Bool("once", false, "renew the lease once, print its TTL and exit, instead of keeping it alive until interrupted")
	id, err := parseLeaseArgs(fs, args, "flotilla lease keepalive [flags] ID: keep lease ID alive until interrupted (Ctrl-C, exit 0), "+
		"renewing it every third of its TTL and printing each renewal:\n"+
		"  lease ID keepalived with TTL(N)\n"+
		"With --json, one JSON object per line. Exits 1 when the lease is gone (expired or revoked) or could not be "+
		"renewed before it would have expired. --timeout bounds connecting and, with --once, the renewal.")
	if err != nil {
		return err
	}
	nctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	r, err := c.router(nctx)
	if err != nil {
		return err
	}
	defer r.Close()
	if *once {
		ttl, err := r.KeepAliveOnce(nctx, id)
		if err != nil {
			return leaseErr(id, err)
		}
		return printKeepAlive(out, c.json, router.KeepAliveResponse{ID: id, TTL: ttl})
	}
	ch, err := r.KeepAlive(ctx, id)
	if err != nil {
		return leaseErr(id, err)
	}
	for resp := range ch {
		if err := printKeepAlive(out, c.json, resp); err != nil {
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
	return fmt.Errorf("lease %s: could not renew it before it would have expired, though it still exists", formatLeaseID(id))
}

// printKeepAlive prints one renewal as etcdctl does, or as a JSON line.
func printKeepAlive(out io.Writer, asJSON bool, resp router.KeepAliveResponse) error {
	if asJSON {
		return writeJSONLine(out, map[string]any{"id": resp.ID, "id_hex": formatLeaseID(resp.ID), "ttl": resp.TTL})
	}
	_, err := fmt.Fprintf(out, "lease %s keepalived with TTL(%d)\n", formatLeaseID(resp.ID), resp.TTL)
	return err
}

func runLeaseTimeToLive(ctx context.Context, args []string, out io.Writer) error {
	var c common
	fs := kvFlags(newFlags("lease timetolive", &c, false), &c)
	keys := fs.Bool("keys", false, "also list the keys attached to the lease")
	id, err := parseLeaseArgs(fs, args, "flotilla lease timetolive [flags] ID (alias: ttl): print lease ID's granted TTL and "+
		"remaining time to live in whole seconds, rounded up, as etcdctl does:\n"+
		"  lease ID granted with TTL(Ns), remaining(Ms)[, attached keys([k1 k2])]")
	if err != nil {
		return err
	}
	ctx, r, done, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer done()
	l, err := r.TimeToLive(ctx, id, *keys)
	if err != nil {
		return leaseErr(id, err)
	}
	if c.json {
		m := map[string]any{"id": l.ID, "id_hex": formatLeaseID(l.ID), "ttl": l.TTL, "granted_ttl": l.GrantedTTL}
		if *keys {
			ks := make([]string, len(l.Keys))
			for i, k := range l.Keys {
				ks[i] = string(k)
			}
			m["keys"] = ks
		}
		return printJSON(out, m)
	}
	fmt.Fprintf(out, "lease %s granted with TTL(%ds), remaining(%ds)", formatLeaseID(l.ID), l.GrantedTTL, l.TTL)
	if *keys {
		ks := make([]string, len(l.Keys))
		for i, k := range l.Keys {
			ks[i] = string(k)
		}
		fmt.Fprintf(out, ", attached keys(%v)", ks)
	}
	fmt.Fprintln(out)
	return nil
}

func runLeaseList(ctx context.Context, args []string, out io.Writer) error {
	var c common
	fs := kvFlags(newFlags("lease list", &c, false), &c)
	if _, err := parse(fs, args, "flotilla lease list [flags]: list the IDs of the leases that exist, in ID order, as etcdctl does "+
		"(\"found N leases\", then one ID a line); a lease being ended may still be listed", 0); err != nil {
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
	if c.json {
		hex := make([]string, len(ids))
		for i, id := range ids {
			hex[i] = formatLeaseID(id)
		}
		return printJSON(out, map[string]any{"leases": append([]uint64{}, ids...), "leases_hex": hex})
	}
	fmt.Fprintf(out, "found %d leases\n", len(ids))
	for _, id := range ids {
		fmt.Fprintln(out, formatLeaseID(id))
	}
	return nil
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
