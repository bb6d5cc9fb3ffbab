package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/cobra"

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
	"With -w json, one JSON object per line (keys and values in base64). Exits 1 if the start revision is compacted."

func newWatchCmd() *cobra.Command {
	var c common
	var wf watchFlags
	cmd := &cobra.Command{
		Use:   "watch [flags] KEY",
		Short: "print every write to KEY (--prefix: to keys starting with KEY) as it happens, until interrupted",
		Long:  watchSummary,
		Args:  nArgs(1),
	}
	c.register(cmd, true, false)
	c.out.register(cmd, formatSimple, " (json: one object a line, keys and values in base64)", writeFormats...)
	fs := cmd.Flags()
	fs.BoolVar(&wf.prefix, "prefix", false, "KEY is a prefix: watch every key that starts with it")
	fs.Uint64Var(&wf.rev, "rev", 0, "start at this revision: print every write at or after it (0: from now). "+
		"To resume a watch, pass the last revision printed + 1")
	fs.BoolVar(&wf.prevKV, "prev-kv", false, "print each key's previous value (prev=...)")
	fs.DurationVar(&wf.progress, "progress", 0, "print PROGRESS lines at most this often when the watch advanced without writes (0: none), e.g. 1s")
	cmd.RunE = run(func(ctx context.Context, cmd *cobra.Command, pos []string, out io.Writer) error {
		if err := c.check(cmd); err != nil {
			return err
		}
		if wf.progress < 0 {
			return usagef("--progress %s: want a duration >= 0", wf.progress)
		}
		return watch(ctx, &c, wf, pos[0], out)
	})
	return cmd
}

// watch is flotilla watch of key.
func watch(ctx context.Context, c *common, wf watchFlags, key string, out io.Writer) error {
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
		if err := printWatchResponse(out, c.out.isJSON(), resp); err != nil {
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
			m := map[string]any{"type": ev.Type.String(), "key": b64(ev.KV.Key), "revision": ev.Revision()}
			if ev.Type == router.EventPut {
				m["value"], m["create_revision"], m["version"] = b64(ev.KV.Value), ev.KV.CreateRevision, ev.KV.Version
			}
			if ev.PrevKV != nil {
				m["prev_value"], m["prev_mod_revision"] = b64(ev.PrevKV.Value), ev.PrevKV.ModRevision
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

func newCompactCmd() *cobra.Command {
	var c common
	var start, end string
	cmd := &cobra.Command{
		Use:   "compact [flags] REV",
		Short: "compact the shards of [--start, --end) to revision REV",
		Long: "flotilla compact [flags] REV: compact every shard owning a part of [--start, --end) to revision REV: " +
			"reads and watches below REV are refused from then on, and older versions are pruned (each whole shard is compacted)",
		Args: nArgs(1),
	}
	c.register(cmd, true, false)
	c.out.register(cmd, formatSimple, "", writeFormats...)
	cmd.Flags().StringVar(&start, "start", "", "first key of the range (inclusive)")
	cmd.Flags().StringVar(&end, "end", "", "end of the range (exclusive); empty: to the end")
	cmd.RunE = run(func(ctx context.Context, cmd *cobra.Command, pos []string, out io.Writer) error {
		if err := c.check(cmd); err != nil {
			return err
		}
		rev, err := strconv.ParseUint(pos[0], 10, 64)
		if err != nil || rev == 0 {
			return usagef("REV %q: want a revision > 0", pos[0])
		}
		if end != "" && start >= end {
			return usagef("--end %q does not sort after --start %q", end, start)
		}
		ctx, r, done, err := c.connect(ctx)
		if err != nil {
			return err
		}
		defer done()
		if err := r.Compact(ctx, []byte(start), []byte(end), rev); err != nil {
			return revisionErr(err)
		}
		if c.out.isJSON() {
			return printJSON(out, map[string]any{"ok": true, "revision": rev})
		}
		fmt.Fprintf(out, "OK (compacted to revision %d)\n", rev)
		return nil
	})
	return cmd
}
