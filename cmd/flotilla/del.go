package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
)

// delSummary is the usage text of flotilla del.
const delSummary = "flotilla del [flags] KEY: delete KEY (deleting an absent key succeeds).\n" +
	"flotilla del [flags] KEY END | --prefix KEY | --from-key KEY: delete every key of the range [KEY, END), every key starting with KEY, " +
	"or KEY and every key after it.\n" +
	"Prints how many keys were deleted and the revision: \"deleted N (revision R)\"; with --prev-kv, then a table of the deleted keys " +
	"as they were.\n" +
	"A range is deleted shard by shard: each shard's part is atomic at its own revision (the revision printed is the highest), " +
	"but the parts are not one transaction; if a part fails, the error says from which key on nothing was deleted."

func runDel(ctx context.Context, args []string, out io.Writer) error {
	var c common
	fs := kvFlags(newFlags("del", &c, false), &c)
	var rf rangeFlags
	rf.register(fs, "delete")
	prevKV := fs.Bool("prev-kv", false, "also print the deleted keys as they were: a table of each key, its value, revisions and lease "+
		"(--json: prev_kvs)")
	pos, err := parse(fs, args, delSummary, 1, 2)
	if err != nil {
		return err
	}
	start, end, ranged, problem := rf.keyRange(pos)
	if problem != "" {
		return usageErr(fs, problem)
	}
	if !ranged {
		end = append(bytes.Clone(start), 0) // [KEY, KEY\x00): KEY alone
	}
	ctx, r, done, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer done()
	res, err := r.DeleteRange(ctx, start, end, *prevKV)
	if err != nil {
		return err
	}
	if c.json {
		m := map[string]any{"key": pos[0], "ok": true, "deleted": res.Deleted, "revision": res.Revision}
		if ranged {
			m["range_end"] = string(end) // "": to the end of the key space
		}
		if *prevKV {
			m["prev_kvs"] = kvsJSON(res.PrevKVs, false)
		}
		return printJSON(out, m)
	}
	fmt.Fprintf(out, "deleted %d (revision %d)\n", res.Deleted, res.Revision)
	if *prevKV && len(res.PrevKVs) > 0 {
		kvTable(out, res.PrevKVs, false)
	}
	return nil
}
