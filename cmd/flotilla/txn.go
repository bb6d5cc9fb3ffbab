package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/flotilla-kv/flotilla/router"
)

// txnSummary is the usage text of flotilla txn.
const txnSummary = `flotilla txn [flags] < INPUT: run a compare-then-else transaction read from standard input, in etcdctl's format:

  compares, one a line, until an empty line:      value("KEY") = "V"   version("KEY") > "3"   create("KEY") = "0"
                                                  mod("KEY") < "123"   lease("KEY") = "0"     (operators: = != < >)
  operations if every compare holds, until an empty line:   put KEY VALUE [--lease ID] [--prev-kv]
                                                           get KEY [END] [--prefix | --from-key]
                                                           del KEY [END] [--prefix | --from-key] [--prev-kv]
  operations otherwise, until the end of the input.

KEY and the compares' operands are Go-quoted strings ("\x00" escapes); in
operations a word with spaces is quoted with "..." or '...'. version, create
and mod compare numbers (decimal; an absent key has 0), lease a lease ID in
hexadecimal (0: none), value bytes. Reads see the writes before them.

Prints SUCCESS or FAILURE (which branch ran), then, after an empty line each,
every operation's result: put "OK" (with --prev-kv, then the key and value it
replaced, a line each), get each key and value (a line each), del how many
keys it deleted (with --prev-kv, then each deleted key and value). -w json
prints one object with the revision and every operation's keys (in base64)
and revisions. FAILURE exits 3 (compare failed) once its operations have run
and been printed, with -w json too; etcdctl exits 0 after FAILURE, so a
script written for etcdctl that treats any non-zero status as an error
should test for 3.

The whole transaction is one atomic write at one revision, so every key and
range it names must be on one shard: a transaction across shards exits 1
and writes nothing. Malformed input exits 2 naming its line. At a terminal it
prompts for each section (on standard error).`

func newTxnCmd() *cobra.Command {
	var c common
	cmd := &cobra.Command{
		Use:   "txn [flags] < INPUT",
		Short: "a compare-then-else transaction on one shard, read from standard input in etcdctl's format",
		Long:  txnSummary,
		Args:  noArgs,
	}
	c.register(cmd, true, false)
	c.out.register(cmd, formatSimple, "", writeFormats...)
	cmd.RunE = run(func(ctx context.Context, cmd *cobra.Command, _ []string, out io.Writer) error {
		if err := c.check(cmd); err != nil {
			return err
		}
		return runTxn(ctx, &c, cmd.InOrStdin(), out, cmd.ErrOrStderr())
	})
	return cmd
}

// runTxn runs the transaction read from in; prompts go to errOut when in
// is a terminal. The FAILURE branch returns errCompareFailed after its
// results are printed.
func runTxn(ctx context.Context, c *common, in io.Reader, out, errOut io.Writer) error {
	var prompt func(string)
	if f, ok := in.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			prompt = func(section string) { fmt.Fprintln(errOut, section) }
		}
	}
	t, err := parseTxn(in, prompt)
	if err != nil {
		var se *txnSyntaxError
		if errors.As(err, &se) {
			return usagef("malformed transaction:\n%v\n\nRun 'flotilla txn --help' for the format", err)
		}
		return err
	}
	ctx, r, done, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer done()
	res, err := r.Transact(ctx, t)
	if errors.Is(err, router.ErrCrossShardTxn) {
		return fmt.Errorf("refused, nothing was written: %w", err)
	}
	if err != nil {
		return err
	}
	ops := t.Then
	if !res.Succeeded {
		ops = t.Else
	}
	if len(res.Ops) != len(ops) {
		panic(fmt.Sprintf("flotilla txn: %d results for the %d operations of the branch that ran", len(res.Ops), len(ops)))
	}
	if c.out.isJSON() {
		err = printJSON(out, txnJSON(res, ops))
	} else {
		printTxn(out, res, ops)
	}
	if err == nil && !res.Succeeded {
		err = &printedError{fmt.Errorf("FAILURE: a compare did not hold; the failure branch ran (%w)", errCompareFailed)}
	}
	return err
}

// printTxn prints a transaction's outcome as etcdctl does: SUCCESS or
// FAILURE, then each operation's result after an empty line.
func printTxn(out io.Writer, res router.TxnResult, ops []router.TxnOp) {
	if res.Succeeded {
		fmt.Fprintln(out, "SUCCESS")
	} else {
		fmt.Fprintln(out, "FAILURE")
	}
	pairs := func(kvs []router.KeyValue) {
		for _, kv := range kvs {
			fmt.Fprintf(out, "%s\n%s\n", kv.Key, kv.Value)
		}
	}
	for i, op := range ops {
		fmt.Fprintln(out)
		r := res.Ops[i]
		switch op.Kind {
		case router.TxnPut:
			fmt.Fprintln(out, "OK")
			pairs(r.KVs)
		case router.TxnGet:
			pairs(r.KVs)
		case router.TxnDelete:
			fmt.Fprintln(out, r.Deleted)
			pairs(r.KVs)
		}
	}
}

// txnJSON is a transaction's outcome for --json.
func txnJSON(res router.TxnResult, ops []router.TxnOp) map[string]any {
	results := make([]map[string]any, len(ops))
	for i, op := range ops {
		r := res.Ops[i]
		m := map[string]any{"key": b64(op.Key)}
		if op.Range {
			m["range_end"] = b64(op.End) // "": to the end of the key space
		}
		switch op.Kind {
		case router.TxnPut:
			m["op"], m["ok"] = "put", true
		case router.TxnGet:
			m["op"], m["kvs"] = "get", kvsJSON(r.KVs, false)
		case router.TxnDelete:
			m["op"], m["deleted"] = "del", r.Deleted
		}
		if op.PrevKV {
			m["prev_kvs"] = kvsJSON(r.KVs, false)
		}
		results[i] = m
	}
	return map[string]any{"succeeded": res.Succeeded, "revision": res.Revision, "ops": results}
}
