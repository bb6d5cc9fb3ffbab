package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/flotilla-kv/flotilla/router"
)

// watchFlags are the flags of flotilla watch, beyond the common ones.
type watchFlags struct {
	prefix   bool
	rev      uint64
	prevKV   bool
	progress time.Duration
}

// watchSummary is the usage line of flotilla watch.
const watchSummary = "flotilla watch [flags] KEY: print every write to KEY (or, with --prefix, to every key starting with KEY) as it happens, " +
	"in revision order, until interrupted:\n" +
	"  PUT \"key\" \"value\" rev=R [prev=\"old\"]\n  DELETE \"key\" rev=R [prev=\"old\"]\n  PROGRESS rev=R   (with --progress: every write at or below R was printed)\n" +
	"With --json, one JSON object per line. Exits 1 if the start revision is compacted."

// parseWatch parses the arguments of flotilla watch.
func parseWatch(args []string) (common, watchFlags, string, error) {
	var c common
	var wf watchFlags
	fs := kvFlags(newFlags("watch", &c, false), &c)
	fs.BoolVar(&wf.prefix, "prefix", false, "KEY is a prefix: watch every key that starts with it")
	fs.Uint64Var(&wf.rev, "rev", 0, "start at this revision: print every write at or after it (0: from now). "+
		"To resume a watch, pass the last revision printed + 1")
	fs.BoolVar(&wf.prevKV, "prev-kv", false, "print each key's previous value (prev=...)")
	fs.DurationVar(&wf.progress, "progress", 0, "print PROGRESS lines at most this often when the watch advanced without writes (0: none), e.g. 1s")
	pos, err := parse(fs, args, watchSummary, 1)
	if err != nil {
		return c, wf, "", err
	}
	if wf.progress < 0 {
		return c, wf, "", fmt.Errorf("--progress %s: want a duration >= 0", wf.progress)
	}
	return c, wf, pos[0], nil
}

func runWatch(ctx context.Context, args []string, out io.Writer) error {
	c, wf, key, err := parseWatch(args)
	if err != nil {
		return err
	}
	// --timeout bounds connecting, not the watch, which runs until
	// interrupted.
	nctx, cancel := context.WithTimeout(ctx, c.timeout)
	r, err := c.router(nctx)
	cancel()
	if err != nil {
		return err
	}
	defer r.Close()
	start, end := []byte(key), append([]byte(key), 0) // [KEY, KEY\x00): KEY alone
	if wf.prefix {
		end = prefixEnd(start)
	}
	opts := []router.WatchOption{router.WithStartRevision(wf.rev)}
	if wf.prevKV {
		opts = append(opts, router.WithPrevKV())
	}
	if wf.progress > 0 {
		opts = append(opts, router.WithProgressNotify(wf.progress))
	}
	for resp := range r.Watch(ctx, start, end, opts...) {
		if resp.Err != nil {
			if ctx.Err() != nil && errors.Is(resp.Err, ctx.Err()) {
				return nil // interrupted
			}
			return revisionErr(resp.Err)
		}
		if err := printWatchResponse(out, c.json, resp); err != nil {
			return err
		}
	}
	return nil
}

// printWatchResponse prints one response: a line per event, or a
// PROGRESS line for a response without events.
func printWatchResponse(out io.Writer, asJSON bool, resp router.WatchResponse) error {
	if len(resp.Events) == 0 {
		if asJSON {
			return writeJSONLine(out, map[string]any{"type": "PROGRESS", "revision": resp.ProgressRevision})
		}
		_, err := fmt.Fprintf(out, "PROGRESS rev=%d\n", resp.ProgressRevision)
		return err
	}
	for _, ev := range resp.Events {
		if asJSON {
			m := map[string]any{"type": ev.Type.String(), "key": string(ev.KV.Key), "revision": ev.Revision()}
			if ev.Type == router.EventPut {
				m["value"], m["create_revision"], m["version"] = string(ev.KV.Value), ev.KV.CreateRevision, ev.KV.Version
			}
			if ev.PrevKV != nil {
				m["prev_value"], m["prev_mod_revision"] = string(ev.PrevKV.Value), ev.PrevKV.ModRevision
			}
			if err := writeJSONLine(out, m); err != nil {
				return err
			}
			continue
		}
		line := fmt.Sprintf("%s %q", ev.Type, ev.KV.Key)
		if ev.Type == router.EventPut {
			line += fmt.Sprintf(" %q", ev.KV.Value)
		}
		line += fmt.Sprintf(" rev=%d", ev.Revision())
		if ev.PrevKV != nil {
			line += fmt.Sprintf(" prev=%q", ev.PrevKV.Value)
		}
		if _, err := fmt.Fprintln(out, line); err != nil {
			return err
		}
	}
	return nil
}

// writeJSONLine writes v as one line of JSON.
func writeJSONLine(out io.Writer, v any) error {
	return json.NewEncoder(out).Encode(v)
}

func runCompact(ctx context.Context, args []string, out io.Writer) error {
	var c common
	fs := kvFlags(newFlags("compact", &c, false), &c)
	start := fs.String("start", "", "first key of the range (inclusive)")
	end := fs.String("end", "", "end of the range (exclusive); empty: to the end")
	pos, err := parse(fs, args, "flotilla compact [flags] REV: compact every shard owning a part of [--start, --end) to revision REV: "+
		"reads and watches below REV are refused from then on, and older versions are pruned (each whole shard is compacted)", 1)
	if err != nil {
		return err
	}
	rev, err := strconv.ParseUint(pos[0], 10, 64)
	if err != nil || rev == 0 {
		fmt.Fprintf(os.Stderr, "REV %q: want a revision > 0\n\n", pos[0])
		fs.Usage()
		return errUsage
	}
	if *end != "" && *start >= *end {
		fmt.Fprintf(os.Stderr, "--end %q does not sort after --start %q\n\n", *end, *start)
		fs.Usage()
		return errUsage
	}
	ctx, r, done, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer done()
	if err := r.Compact(ctx, []byte(*start), []byte(*end), rev); err != nil {
		return revisionErr(err)
	}
	if c.json {
		return printJSON(out, map[string]any{"ok": true, "revision": rev})
	}
	fmt.Fprintf(out, "OK (compacted to revision %d)\n", rev)
	return nil
}
