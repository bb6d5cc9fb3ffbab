package main

import (
	"bytes"
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

// delSummary is the usage text of flotilla del.
const delSummary = "flotilla del [flags] KEY: delete KEY (deleting an absent key succeeds).\n" +
	"flotilla del [flags] KEY END | --prefix KEY | --from-key KEY: delete every key of the range [KEY, END), every key starting with KEY, " +
	"or KEY and every key after it.\n" +
	"Prints how many keys were deleted and the revision: \"deleted N (revision R)\"; with --prev-kv, then a table of the deleted keys " +
	"as they were.\n" +
	"A range is deleted shard by shard: each shard's part is atomic at its own revision (the revision printed is the highest), " +
	"but the parts are not one transaction; if a part fails, the error says from which key on nothing was deleted."

func newDelCmd() *cobra.Command {
	var c common
	var rf rangeFlags
	var prevKV bool
	cmd := &cobra.Command{
		Use:   "del [flags] KEY [END]",
		Short: "delete KEY, or a range (KEY END, --prefix, --from-key), printing how many keys",
		Long:  delSummary,
		Args:  nArgs(1, 2),
	}
	c.register(cmd, true, false)
	c.out.register(cmd, formatSimple, " (json: key and range_end in base64, deleted, revision, prev_kvs)", writeFormats...)
	rf.register(cmd.Flags(), "delete")
	cmd.Flags().BoolVar(&prevKV, "prev-kv", false, "also print the deleted keys as they were: a table of each key, its value, revisions and lease "+
		"(-w json: prev_kvs)")
	cmd.RunE = run(func(ctx context.Context, cmd *cobra.Command, pos []string, out io.Writer) error {
		if err := c.check(cmd); err != nil {
			return err
		}
		start, end, ranged, problem := rf.keyRange(pos)
		if problem != "" {
			return usagef("%s", problem)
		}
		if !ranged {
			end = append(bytes.Clone(start), 0) // [KEY, KEY\x00): KEY alone
		}
		ctx, r, done, err := c.connect(ctx)
		if err != nil {
			return err
		}
		defer done()
		res, err := r.DeleteRange(ctx, start, end, prevKV)
		if err != nil {
			return err
		}
		if c.out.isJSON() {
			m := map[string]any{"key": b64(start), "ok": true, "deleted": res.Deleted, "revision": res.Revision}
			if ranged {
				m["range_end"] = b64(end) // "": to the end of the key space
			}
			if prevKV {
				m["prev_kvs"] = kvsJSON(res.PrevKVs, false)
			}
			return printJSON(out, m)
		}
		fmt.Fprintf(out, "deleted %d (revision %d)\n", res.Deleted, res.Revision)
		if prevKV && len(res.PrevKVs) > 0 {
			kvTable(out, res.PrevKVs, false)
		}
		return nil
	})
	return cmd
}
