package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"

	"github.com/flotilla-kv/flotilla/internal/cli"
	"github.com/flotilla-kv/flotilla/internal/keyfmt"
	"github.com/flotilla-kv/flotilla/internal/tlsconfig"
	"github.com/flotilla-kv/flotilla/router"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// common are the flags every client command takes.
type common struct {
	placement   string
	nodes       string
	json        bool
	timeout     time.Duration
	consistency string
	tls         tlsconfig.Files // --tls-cert, --tls-key, --tls-ca: mutual TLS to placement and nodes
}

func newFlags(name string, c *common, reads bool) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.StringVar(&c.placement, "placement", "127.0.0.1:7000",
		"placement service addresses, comma-separated; each is tried in turn (2s to connect), from the one that answered last")
	fs.BoolVar(&c.json, "json", false, "print JSON instead of a table")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "deadline of the whole command")
	c.tls.RegisterFlags(fs, "this client, signed by the cluster's CA ('flotilla certs' makes client.crt)")
	if reads {
		fs.StringVar(&c.consistency, "consistency", "linearizable", "read consistency: linearizable, lease or stale")
	}
	return fs
}

// kvFlags adds the flags of the key-value commands (get, put, del, cas,
// scan) to fs.
func kvFlags(fs *flag.FlagSet, c *common) *flag.FlagSet {
	fs.StringVar(&c.nodes, "nodes", "",
		"shardnode addresses, comma-separated (optional): asked for routes when no placement address answers, so the command works while placement is down")
	return fs
}

// parse parses args, flags and positional arguments in any order ("--"
// ends the flags), and checks the number of positional arguments.
func parse(fs *flag.FlagSet, args []string, summary string, want ...int) ([]string, error) {
	fs.SetOutput(os.Stderr)
	fs.Usage = func() {
		cli.PrintUsage(fs, os.Stderr, summary+"\n\nFlags may come before or after the arguments; '--' ends them (for an argument that starts with '-').")
	}
	pos, err := cli.ParseInterleaved(fs, args)
	if err != nil {
		if err == flag.ErrHelp {
			return nil, err
		}
		return nil, errUsage
	}
	// The environment fills what the command line did not.
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var bad error
	fs.VisitAll(func(f *flag.Flag) {
		if v, ok := os.LookupEnv(cli.EnvName(f.Name)); ok && !set[f.Name] {
			if err := f.Value.Set(v); err != nil && bad == nil {
				bad = fmt.Errorf("%s: %w", cli.EnvName(f.Name), err)
			}
		}
	})
	if bad != nil {
		return nil, bad
	}
	if p := tlsFlags(fs).Problems(); p != nil {
		fmt.Fprintf(os.Stderr, "%s\n\n", strings.Join(p, "\n"))
		fs.Usage()
		return nil, errUsage
	}
	for _, n := range want {
		if len(pos) == n {
			return pos, nil
		}
	}
	fmt.Fprintf(os.Stderr, "wrong number of arguments: %d given (%s), want %s\n\n", len(pos), quoteArgs(pos), counts(want))
	fs.Usage()
	return nil, errUsage
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
	return nil, fmt.Errorf("--consistency %q: want linearizable, lease or stale", c.consistency)
}

// tlsFlags returns the TLS files set on fs (zero if fs has no TLS flags).
func tlsFlags(fs *flag.FlagSet) tlsconfig.Files {
	get := func(name string) string {
		if f := fs.Lookup(name); f != nil {
			return f.Value.String()
		}
		return ""
	}
	return tlsconfig.Files{Cert: get(tlsconfig.FlagCert), Key: get(tlsconfig.FlagKey), CA: get(tlsconfig.FlagCA)}
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

func printJSON(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func table(out io.Writer, header string, rows [][]string) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

func runPut(ctx context.Context, args []string, out io.Writer) error {
	var c common
	fs := kvFlags(newFlags("put", &c, false), &c)
	var lease leaseIDFlag
	fs.Var(&lease, "lease", "attach KEY to this lease, in hexadecimal as 'flotilla lease grant' prints it: "+
		"KEY is deleted when the lease expires or is revoked. Exits 1 if the lease does not exist")
	ttl := fs.Duration("ttl", 0, "put KEY on a fresh lease of this duration (e.g. 30s, 5m; rounded up to whole seconds, "+
		"at least the fleet's minimum, 2s by default), which nothing keeps alive: KEY is deleted once it has passed. "+
		"Prints the lease's ID, to keep it alive or revoke it with 'flotilla lease'. Not with --lease")
	pos, err := parse(fs, args, "flotilla put [flags] KEY VALUE: write VALUE under KEY; prints the write's revision "+
		"(with --ttl, then \"lease ID granted with TTL(Ns)\").\n\n"+leaseIDHelp, 2)
	if err != nil {
		return err
	}
	switch {
	case *ttl < 0:
		return usageErr(fs, fmt.Sprintf("--ttl %s: want a duration > 0", *ttl))
	case *ttl > 0 && lease != 0:
		return usageErr(fs, "--ttl and --lease: give one (--ttl grants a lease of its own)")
	}
	ctx, r, done, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer done()
	key, value := []byte(pos[0]), []byte(pos[1])
	var g router.LeaseGrant
	var w router.WriteResult
	switch {
	case *ttl > 0:
		g, w, err = putWithTTL(ctx, r, key, value, *ttl)
	case lease != 0:
		g.ID = uint64(lease)
		w, err = r.PutLease(ctx, key, value, g.ID)
		err = leaseErr(g.ID, err)
	default:
		w, err = r.PutRev(ctx, key, value)
	}
	if err != nil {
		return err
	}
	if c.json {
		m := map[string]any{"key": pos[0], "ok": true, "revision": w.Revision}
		if g.ID != 0 {
			m["lease"], m["lease_hex"] = g.ID, formatLeaseID(g.ID)
		}
		if *ttl > 0 {
			m["ttl"] = g.TTL
		}
		return printJSON(out, m)
	}
	fmt.Fprintf(out, "OK (revision %d)\n", w.Revision)
	if *ttl > 0 {
		fmt.Fprintf(out, "lease %s granted with TTL(%ds)\n", formatLeaseID(g.ID), g.TTL)
	}
	return nil
}

// getSummary is the usage text of flotilla get.
const getSummary = "flotilla get [flags] KEY: print the value of KEY (exit 1 if absent); --json adds its revisions and lease " +
	"(lease: the ID as a number, 0 for none; lease_hex: as the lease commands take it).\n" +
	"flotilla get [flags] KEY END | --prefix KEY | --from-key KEY: print the keys of the range [KEY, END), those starting with KEY, " +
	"or KEY and those after it, all read at one revision (a consistent snapshot across shards): a line naming the revision, then a table of " +
	"each key, its value, revisions and lease (hexadecimal; - for none).\n" +
	"--keys-only leaves the values out, --print-value-only prints only the values (one a line, raw), --count-only only how many keys there are."

func runGet(ctx context.Context, args []string, out io.Writer) error {
	var c common
	fs := kvFlags(newFlags("get", &c, true), &c)
	rev := fs.Uint64("rev", 0, "read as of this revision (every write at or below it, none above); 0: the latest. "+
		"Fails if the revision is compacted or was never handed out")
	var rf rangeFlags
	rf.register(fs, "print")
	limit := fs.Int("limit", 0, "a range (KEY END, --prefix, --from-key): at most this many keys, the first in key order (0: all); "+
		"--json says \"more\": true when keys were left out")
	keysOnly := fs.Bool("keys-only", false, "print keys without their values: a key alone, raw; a range, its table without the VALUE column "+
		"(--json: no \"value\")")
	valuesOnly := fs.Bool("print-value-only", false, "print only the values, raw, one a line (a single key prints only its value anyway); not with --json")
	countOnly := fs.Bool("count-only", false, "print only how many keys there are (a single key: 1 or 0, exiting 0 either way); "+
		"counts every key of the range, so not with --limit")
	pos, err := parse(fs, args, getSummary, 1, 2)
	if err != nil {
		return err
	}
	start, end, ranged, problem := rf.keyRange(pos)
	switch {
	case problem != "":
	case *limit < 0:
		problem = fmt.Sprintf("--limit %d: want 0 (all) or more", *limit)
	case *limit > 0 && !ranged:
		problem = "--limit applies to a range: KEY END, --prefix or --from-key"
	case *countOnly && *limit > 0:
		problem = "--count-only counts every key of the range: --limit does not apply"
	case *countOnly && (*keysOnly || *valuesOnly):
		problem = "--count-only prints a number: not with --keys-only or --print-value-only"
	case *keysOnly && *valuesOnly:
		problem = "--keys-only and --print-value-only: give one"
	case *valuesOnly && c.json:
		problem = "--print-value-only prints raw values: not with --json"
	}
	if problem != "" {
		return usageErr(fs, problem)
	}
	opt, err := c.consistencyOpt()
	if err != nil {
		return err
	}
	ctx, r, done, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer done()
	if ranged {
		return getRange(ctx, r, out, c.json, start, end, *limit, *rev, opt, getOutput{*keysOnly, *valuesOnly, *countOnly})
	}
	res, err := r.GetAt(ctx, start, *rev, opt)
	if err != nil {
		return revisionErr(err)
	}
	if *countOnly {
		n := 0
		if res.Found {
			n = 1
		}
		if c.json {
			return printJSON(out, map[string]any{"key": pos[0], "count": n, "revision": res.Revision})
		}
		fmt.Fprintln(out, n)
		return nil
	}
	if c.json {
		m := map[string]any{"key": pos[0], "found": res.Found, "revision": res.Revision}
		if res.Found {
			for k, v := range kvJSON(res.KV, *keysOnly) {
				m[k] = v
			}
		}
		return printJSON(out, m)
	}
	if !res.Found {
		if *rev != 0 {
			return fmt.Errorf("key %s not found at revision %d", keyfmt.Quote(start), *rev)
		}
		return fmt.Errorf("key %s not found", keyfmt.Quote(start))
	}
	if *keysOnly {
		fmt.Fprintln(out, string(res.KV.Key))
		return nil
	}
	fmt.Fprintln(out, string(res.KV.Value))
	return nil
}

// getOutput says what get prints of the keys it read.
type getOutput struct {
	keysOnly, valuesOnly, countOnly bool
}

// getRange reads [start, end) at one revision and prints it as o says:
// its count (CountAt: the nodes count, nothing is sent per key), its
// keys (ScanKeysAt: no values sent) or its pairs (ScanAt).
func getRange(ctx context.Context, r *router.Client, out io.Writer, asJSON bool, start, end []byte, limit int, rev uint64, opt router.ReadOption, o getOutput) error {
	if o.countOnly {
		n, at, err := r.CountAt(ctx, start, end, rev, opt)
		if err != nil {
			return revisionErr(err)
		}
		if asJSON {
			return printJSON(out, map[string]any{"revision": at, "count": n})
		}
		fmt.Fprintln(out, n)
		return nil
	}
	ask := limit
	if limit > 0 {
		ask = limit + 1 // one more, to know whether keys were left out
	}
	scan := r.ScanAt
	if o.keysOnly {
		scan = r.ScanKeysAt
	}
	res, err := scan(ctx, start, end, ask, rev, opt)
	if err != nil {
		return revisionErr(err)
	}
	more := limit > 0 && len(res.KVs) > limit
	if more {
		res.KVs = res.KVs[:limit]
	}
	switch {
	case o.valuesOnly:
		for _, kv := range res.KVs {
			fmt.Fprintln(out, string(kv.Value))
		}
	case asJSON:
		return printJSON(out, map[string]any{"revision": res.Revision, "kvs": kvsJSON(res.KVs, o.keysOnly), "more": more})
	default:
		fmt.Fprintf(out, "revision %d\n", res.Revision)
		kvTable(out, res.KVs, o.keysOnly)
	}
	return nil
}

// addLease adds a key's lease to its JSON object: "lease", the ID as a
// number (0: none), and "lease_hex", as the lease commands take it ("":
// none), since a JSON number that large loses digits in many readers.
func addLease(m map[string]any, id uint64) {
	m["lease"], m["lease_hex"] = id, ""
	if id != 0 {
		m["lease_hex"] = formatLeaseID(id)
	}
}

// leaseCell is a key's lease in a table: its ID in hexadecimal, or "-".
func leaseCell(id uint64) string {
	if id == 0 {
		return "-"
	}
	return formatLeaseID(id)
}

// prefixEnd returns the end of the range of keys starting with prefix:
// prefix with its last byte below 0xff incremented (and what follows
// dropped), or nil (+inf) when there is none (an empty prefix, or only
// 0xff bytes).
func prefixEnd(prefix []byte) []byte {
	end := bytes.Clone(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// revisionErr explains the errors of a read or watch at a revision that
// the shards refuse for good.
func revisionErr(err error) error {
	var ce *router.CompactedError
	var fe *router.FutureRevisionError
	switch {
	case errors.As(err, &ce):
		return fmt.Errorf("revision compacted: shard %d keeps revisions from %d on; use --rev %d or later (%w)", ce.ShardID, ce.CompactRevision, ce.CompactRevision, err)
	case errors.As(err, &fe):
		return fmt.Errorf("revision %d is in the future: the latest is about %d (%w)", fe.Revision, fe.CurrentRevision, err)
	}
	return err
}

func runCAS(ctx context.Context, args []string, out io.Writer) error {
	var c common
	fs := kvFlags(newFlags("cas", &c, false), &c)
	absent := fs.Bool("absent", false, "KEY must not exist (then the arguments are KEY NEW)")
	pos, err := parse(fs, args, "flotilla cas [flags] KEY EXPECTED NEW: set KEY to NEW if it holds EXPECTED (exit 1 if not)", 2, 3)
	if err != nil {
		return err
	}
	var key, expected, value []byte
	switch {
	case *absent && len(pos) == 2:
		key, value = []byte(pos[0]), []byte(pos[1])
	case !*absent && len(pos) == 3:
		key, expected, value = []byte(pos[0]), []byte(pos[1]), []byte(pos[2])
	default:
		fs.Usage()
		return errUsage
	}
	ctx, r, done, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer done()
	res, err := r.CompareAndSwap(ctx, key, expected, *absent, value)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(out, map[string]any{"key": string(key), "swapped": res.Swapped, "found": res.Found, "current": string(res.Current), "revision": res.Revision})
	}
	if !res.Swapped {
		if !res.Found {
			return fmt.Errorf("not swapped: %s is absent", keyfmt.Quote(key))
		}
		return fmt.Errorf("not swapped: %s holds %s", keyfmt.Quote(key), keyfmt.Quote(res.Current))
	}
	fmt.Fprintf(out, "OK (revision %d)\n", res.Revision)
	return nil
}

func runScan(ctx context.Context, args []string, out io.Writer) error {
	var c common
	fs := kvFlags(newFlags("scan", &c, true), &c)
	start := fs.String("start", "", "first key (inclusive)")
	end := fs.String("end", "", "last key (exclusive); empty: to the end")
	limit := fs.Int("limit", 100, "at most this many keys")
	if _, err := parse(fs, args, "flotilla scan [flags]: list keys and values in key order", 0); err != nil {
		return err
	}
	if *end != "" && *start > *end {
		fmt.Fprintf(os.Stderr, "--end %s sorts before --start %s: the range [start, end) would be empty by mistake\n\n",
			keyfmt.Quote([]byte(*end)), keyfmt.Quote([]byte(*start)))
		fs.Usage()
		return errUsage
	}
	opt, err := c.consistencyOpt()
	if err != nil {
		return err
	}
	ctx, r, done, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer done()
	kvs, err := r.Scan(ctx, []byte(*start), []byte(*end), *limit, opt)
	if err != nil {
		return err
	}
	if c.json {
		rows := make([]map[string]any, len(kvs))
		for i, kv := range kvs {
			rows[i] = map[string]any{"key": string(kv.Key), "value": string(kv.Value),
				"create_revision": kv.CreateRevision, "mod_revision": kv.ModRevision, "version": kv.Version}
			addLease(rows[i], kv.Lease)
		}
		return printJSON(out, rows)
	}
	rows := make([][]string, len(kvs))
	for i, kv := range kvs {
		rows[i] = []string{fmt.Sprintf("%q", kv.Key), fmt.Sprintf("%q", kv.Value)}
	}
	table(out, "KEY\tVALUE", rows)
	return nil
}
