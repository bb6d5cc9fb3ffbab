package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/flotilla-kv/flotilla/internal/keyfmt"
	"github.com/flotilla-kv/flotilla/router"
)

// writeFormats are the output formats of the commands that write: a
// sentence, or JSON.
var writeFormats = []string{formatSimple, formatJSON}

// maxStdinValue bounds a value put reads from standard input: the most one
// request carries (the nodes refuse a value above their own limit, 1 MiB
// by default, with its own message).
const maxStdinValue = 16 << 20

// readValue reads a value from r, all of it, up to maxStdinValue bytes.
func readValue(r io.Reader) ([]byte, error) {
	v, err := io.ReadAll(io.LimitReader(r, maxStdinValue+1))
	if err != nil {
		return nil, fmt.Errorf("reading the value from standard input: %w", err)
	}
	if len(v) > maxStdinValue {
		return nil, usagef("standard input holds more than %d bytes, more than one request carries", maxStdinValue)
	}
	return v, nil
}

func newPutCmd() *cobra.Command {
	var c common
	var lease leaseIDFlag
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "put [flags] KEY [VALUE]",
		Short: "write VALUE (or standard input) under KEY (--lease ID: attached to a lease; --ttl 30s: on a fresh lease)",
		Long: "flotilla put [flags] KEY [VALUE]: write VALUE under KEY; prints the write's revision " +
			"(with --ttl, then \"lease ID granted with TTL(Ns)\"). Without VALUE, the value is " +
			"everything read from standard input, as etcdctl put reads it, byte for byte (a trailing " +
			"newline included): the way to write a value a command line cannot hold (a NUL byte, or " +
			"more than the system's limit on one argument, about 128 KiB on Linux).\n\n" + leaseIDHelp,
		Args: nArgs(1, 2),
	}
	c.register(cmd, true, false)
	c.out.register(cmd, formatSimple, " (json: key in base64, revision, lease)", writeFormats...)
	cmd.Flags().Var(&lease, "lease", "attach KEY to this lease, in hexadecimal as 'flotilla lease grant' prints it: "+
		"KEY is deleted when the lease expires or is revoked. Exits 3 if the lease does not exist")
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "put KEY on a fresh lease of this duration (e.g. 30s, 5m; rounded up to whole seconds, "+
		"at least the fleet's minimum, 2s by default), which nothing keeps alive: KEY is deleted once it has passed. "+
		"Prints the lease's ID, to keep it alive or revoke it with 'flotilla lease'. Not with --lease")
	cmd.RunE = run(func(ctx context.Context, cmd *cobra.Command, pos []string, out io.Writer) error {
		if err := c.check(cmd); err != nil {
			return err
		}
		switch {
		case ttl < 0:
			return usagef("--ttl %s: want a duration > 0", ttl)
		case ttl > 0 && lease != 0:
			return usagef("--ttl and --lease: give one (--ttl grants a lease of its own)")
		}
		key := []byte(pos[0])
		var value []byte
		if len(pos) == 2 {
			value = []byte(pos[1])
		} else {
			var err error
			if value, err = readValue(cmd.InOrStdin()); err != nil {
				return err
			}
		}
		ctx, r, done, err := c.connect(ctx)
		if err != nil {
			return err
		}
		defer done()
		var g router.LeaseGrant
		var w router.WriteResult
		switch {
		case ttl > 0:
			g, w, err = putWithTTL(ctx, r, key, value, ttl)
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
		if c.out.isJSON() {
			m := map[string]any{"key": b64(key), "ok": true, "revision": w.Revision}
			if g.ID != 0 {
				m["lease"], m["lease_hex"] = g.ID, formatLeaseID(g.ID)
			}
			if ttl > 0 {
				m["ttl"] = g.TTL
			}
			return printJSON(out, m)
		}
		fmt.Fprintf(out, "OK (revision %d)\n", w.Revision)
		if ttl > 0 {
			fmt.Fprintf(out, "lease %s granted with TTL(%ds)\n", formatLeaseID(g.ID), g.TTL)
		}
		return nil
	})
	return cmd
}

// getLong is the usage text of flotilla get.
const getLong = "flotilla get [flags] KEY: print the value of KEY (exit 3 if absent, with -w json too, after printing " +
	"\"found\": false); -w table prints its revisions and lease in a table, -w json as an object " +
	"(key and value in base64; lease: the ID as a number, 0 for none; lease_hex: as the lease commands take it).\n" +
	"flotilla get [flags] KEY END | --prefix KEY | --from-key KEY: print the keys of the range [KEY, END), those starting with KEY, " +
	"or KEY and those after it, all read at one revision (a consistent snapshot across shards): a line naming the revision, then a table of " +
	"each key, its value, revisions and lease (hexadecimal; - for none); -w simple prints each key and value on a line of its own, " +
	"as etcdctl does; an empty range is no error.\n" +
	"--keys-only leaves the values out, --print-value-only prints only the values (one a line, raw), --count-only only how many keys there are."

func newGetCmd() *cobra.Command {
	var c common
	var rf rangeFlags
	var rev uint64
	var limit int
	var o getOutput
	cmd := &cobra.Command{
		Use:   "get [flags] KEY [END]",
		Short: "read KEY, or a range at one revision (KEY END, --prefix, --from-key)",
		Long:  getLong,
		Args:  nArgs(1, 2),
	}
	c.register(cmd, true, true)
	c.out.register(cmd, "", " (default: simple for one key, the value alone; table for a range)", formatSimple, formatTable, formatJSON)
	fs := cmd.Flags()
	fs.Uint64Var(&rev, "rev", 0, "read as of this revision (every write at or below it, none above); 0: the latest. "+
		"Fails if the revision is compacted or was never handed out")
	rf.register(fs, "print")
	fs.IntVar(&limit, "limit", 0, "a range (KEY END, --prefix, --from-key): at most this many keys, the first in key order (0: all); "+
		"-w json says \"more\": true when keys were left out")
	fs.BoolVar(&o.keysOnly, "keys-only", false, "print keys without their values: a key alone, raw; a range, its table without the VALUE column "+
		"(-w json: no \"value\")")
	fs.BoolVar(&o.valuesOnly, "print-value-only", false, "print only the values, raw, one a line (a single key prints only its value anyway); not with -w json")
	fs.BoolVar(&o.countOnly, "count-only", false, "print only how many keys there are (a single key: 1 or 0, exiting 0 either way); "+
		"counts every key of the range, so not with --limit")
	cmd.RunE = run(func(ctx context.Context, cmd *cobra.Command, pos []string, out io.Writer) error {
		if err := c.check(cmd); err != nil {
			return err
		}
		start, end, ranged, problem := rf.keyRange(pos)
		switch {
		case problem != "":
		case limit < 0:
			problem = fmt.Sprintf("--limit %d: want 0 (all) or more", limit)
		case limit > 0 && !ranged:
			problem = "--limit applies to a range: KEY END, --prefix or --from-key"
		case o.countOnly && limit > 0:
			problem = "--count-only counts every key of the range: --limit does not apply"
		case o.countOnly && (o.keysOnly || o.valuesOnly):
			problem = "--count-only prints a number: not with --keys-only or --print-value-only"
		case o.keysOnly && o.valuesOnly:
			problem = "--keys-only and --print-value-only: give one"
		case o.valuesOnly && c.out.isJSON():
			problem = "--print-value-only prints raw values: not with -w json"
		}
		if problem != "" {
			return usagef("%s", problem)
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
		o.format = c.out.format
		if ranged {
			if o.format == "" {
				o.format = formatTable
			}
			return getRange(ctx, r, out, start, end, limit, rev, opt, o)
		}
		if o.format == "" {
			o.format = formatSimple
		}
		return getKey(ctx, r, out, start, rev, opt, o)
	})
	return cmd
}

// getOutput says what get prints of the keys it read, and how.
type getOutput struct {
	keysOnly, valuesOnly, countOnly bool
	format                          string
}

// getKey reads key and prints it as o says. An absent key is
// errNotFound, also after its JSON was printed.
func getKey(ctx context.Context, r *router.Client, out io.Writer, key []byte, rev uint64, opt router.ReadOption, o getOutput) error {
	res, err := r.GetAt(ctx, key, rev, opt)
	if err != nil {
		return revisionErr(err)
	}
	if o.countOnly {
		n := 0
		if res.Found {
			n = 1
		}
		if o.format == formatJSON {
			return printJSON(out, map[string]any{"key": b64(key), "count": n, "revision": res.Revision})
		}
		fmt.Fprintln(out, n)
		return nil
	}
	var absent error
	if !res.Found {
		absent = fmt.Errorf("key %s %w", keyfmt.Quote(key), errNotFound)
		if rev != 0 {
			absent = fmt.Errorf("key %s %w at revision %d", keyfmt.Quote(key), errNotFound, rev)
		}
	}
	switch o.format {
	case formatJSON:
		m := map[string]any{"key": b64(key), "found": res.Found, "revision": res.Revision}
		if res.Found {
			for k, v := range kvJSON(res.KV, o.keysOnly) {
				m[k] = v
			}
		}
		if err := printJSON(out, m); err != nil {
			return err
		}
		return absent
	case formatTable:
		if absent != nil {
			return absent
		}
		fmt.Fprintf(out, "revision %d\n", res.Revision)
		kvTable(out, []router.KeyValue{res.KV}, o.keysOnly)
		return nil
	}
	if absent != nil {
		return absent
	}
	if o.keysOnly {
		fmt.Fprintln(out, string(res.KV.Key))
		return nil
	}
	fmt.Fprintln(out, string(res.KV.Value))
	return nil
}

// getRange reads [start, end) at one revision and prints it as o says:
// its count (CountAt: the nodes count, nothing is sent per key), its
// keys (ScanKeysAt: no values sent) or its pairs (ScanAt).
func getRange(ctx context.Context, r *router.Client, out io.Writer, start, end []byte, limit int, rev uint64, opt router.ReadOption, o getOutput) error {
	if o.countOnly {
		n, at, err := r.CountAt(ctx, start, end, rev, opt)
		if err != nil {
			return revisionErr(err)
		}
		if o.format == formatJSON {
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
	case o.format == formatJSON:
		return printJSON(out, map[string]any{"revision": res.Revision, "kvs": kvsJSON(res.KVs, o.keysOnly), "more": more})
	case o.format == formatSimple:
		kvLines(out, res.KVs, o.keysOnly)
	default:
		fmt.Fprintf(out, "revision %d\n", res.Revision)
		kvTable(out, res.KVs, o.keysOnly)
	}
	return nil
}

// kvLines prints kvs as etcdctl's simple format does: each key, then its
// value (unless keysOnly), on lines of their own, raw.
func kvLines(out io.Writer, kvs []router.KeyValue, keysOnly bool) {
	for _, kv := range kvs {
		fmt.Fprintf(out, "%s\n", kv.Key)
		if !keysOnly {
			fmt.Fprintf(out, "%s\n", kv.Value)
		}
	}
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

func newCASCmd() *cobra.Command {
	var c common
	var absent bool
	cmd := &cobra.Command{
		Use:   "cas [flags] KEY EXPECTED NEW | cas --absent [flags] KEY NEW",
		Short: "compare-and-swap: set KEY to NEW if it holds EXPECTED (--absent: if it does not exist)",
		Long: "flotilla cas [flags] KEY EXPECTED NEW: set KEY to NEW if it holds EXPECTED; with --absent (KEY NEW), if KEY does not exist.\n" +
			"Prints the write's revision; when KEY holds something else it writes nothing, says what KEY holds and exits 3 " +
			"(compare failed), with -w json too (\"swapped\": false; key and values in base64).",
		Args: nArgs(2, 3),
	}
	c.register(cmd, true, false)
	c.out.register(cmd, formatSimple, "", writeFormats...)
	cmd.Flags().BoolVar(&absent, "absent", false, "KEY must not exist (then the arguments are KEY NEW)")
	cmd.RunE = run(func(ctx context.Context, cmd *cobra.Command, pos []string, out io.Writer) error {
		if err := c.check(cmd); err != nil {
			return err
		}
		var key, expected, value []byte
		switch {
		case absent && len(pos) == 2:
			key, value = []byte(pos[0]), []byte(pos[1])
		case !absent && len(pos) == 3:
			key, expected, value = []byte(pos[0]), []byte(pos[1]), []byte(pos[2])
		case absent:
			return usagef("with --absent: KEY NEW, got %d arguments", len(pos))
		default:
			return usagef("KEY EXPECTED NEW (or --absent KEY NEW), got %d arguments", len(pos))
		}
		ctx, r, done, err := c.connect(ctx)
		if err != nil {
			return err
		}
		defer done()
		res, err := r.CompareAndSwap(ctx, key, expected, absent, value)
		if err != nil {
			return err
		}
		var failed error
		switch {
		case res.Swapped:
		case !res.Found:
			failed = fmt.Errorf("not swapped: %s is absent (%w)", keyfmt.Quote(key), errCompareFailed)
		default:
			failed = fmt.Errorf("not swapped: %s holds %s (%w)", keyfmt.Quote(key), keyfmt.Quote(res.Current), errCompareFailed)
		}
		if c.out.isJSON() {
			if err := printJSON(out, map[string]any{"key": b64(key), "swapped": res.Swapped, "found": res.Found,
				"current": b64(res.Current), "revision": res.Revision}); err != nil {
				return err
			}
			return failed
		}
		if failed != nil {
			return failed
		}
		fmt.Fprintf(out, "OK (revision %d)\n", res.Revision)
		return nil
	})
	return cmd
}

func newScanCmd() *cobra.Command {
	var c common
	var start, end string
	var limit int
	cmd := &cobra.Command{
		Use:   "scan [flags]",
		Short: "list keys and values of [--start, --end) in key order",
		Long: "flotilla scan [flags]: list the keys of [--start, --end) and their values in key order, at most --limit: " +
			"a table of Go-quoted keys and values, each value cut to --value-width characters; -w simple: each key and whole value raw " +
			"on a line of its own; -w json: a list (keys and whole values in base64, revisions, lease).",
		Args: noArgs,
	}
	c.register(cmd, true, true)
	c.out.register(cmd, formatTable, "", formatTable, formatSimple, formatJSON)
	cmd.Flags().StringVar(&start, "start", "", "first key (inclusive)")
	cmd.Flags().StringVar(&end, "end", "", "last key (exclusive); empty: to the end")
	cmd.Flags().IntVar(&limit, "limit", 100, "at most this many keys")
	var width int
	cmd.Flags().IntVar(&width, "value-width", defaultValueWidth, "table output: show at most about this many characters of each quoted value, "+
		"then its size (0: whole values)")
	cmd.RunE = run(func(ctx context.Context, cmd *cobra.Command, _ []string, out io.Writer) error {
		if err := c.check(cmd); err != nil {
			return err
		}
		if width < 0 {
			return usagef("--value-width %d: want 0 (whole values) or more", width)
		}
		if end != "" && start > end {
			return usagef("--end %s sorts before --start %s: the range [start, end) would be empty by mistake",
				keyfmt.Quote([]byte(end)), keyfmt.Quote([]byte(start)))
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
		kvs, err := r.Scan(ctx, []byte(start), []byte(end), limit, opt)
		if err != nil {
			return err
		}
		switch c.out.format {
		case formatJSON:
			return printJSON(out, kvsJSON(kvs, false))
		case formatSimple:
			kvLines(out, kvs, false)
			return nil
		}
		rows := make([][]string, len(kvs))
		for i, kv := range kvs {
			rows[i] = []string{strconv.Quote(string(kv.Key)), valueCell(kv.Value, width)}
		}
		table(out, "KEY\tVALUE", rows)
		return nil
	})
	return cmd
}
