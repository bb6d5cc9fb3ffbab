package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/flotilla-kv/flotilla/internal/cli"
	"github.com/flotilla-kv/flotilla/internal/telemetry"
)

// rootLong is the description of flotilla in 'flotilla --help'.
const rootLong = `flotilla: the Flotilla command-line client.

Flags may come before or after the arguments ('flotilla get KEY --consistency
lease'); '--' ends them, for a KEY or VALUE that starts with '-'. --placement
takes every placement replica's address (commands fail over between them);
--nodes names shardnodes that key-value commands ask for routes while
placement is down.

Output: the read commands (get, scan, status, nodes, shards, lease list and
timetolive, watch) take -w table|simple|json, as etcdctl's --write-out; --json
is -w json. JSON writes keys and values in base64, as etcdctl's JSON does, so
binary keys and values round-trip, and IDs and revisions as numbers.

Environment: every flag may also be set by an environment variable, shown in
each command's --help; the command line wins. The flags that say how to reach
the fleet are shared by every command: FLOTILLA_PLACEMENT, FLOTILLA_NODES (the
key-value commands' --nodes), FLOTILLA_TLS_CERT, FLOTILLA_TLS_KEY,
FLOTILLA_TLS_CA, FLOTILLA_TIMEOUT and FLOTILLA_CONSISTENCY. Every other flag's
variable is named after its command: FLOTILLA_DEMO_NODES, FLOTILLA_CERTS_DIR,
FLOTILLA_BACKUP_DIR, FLOTILLA_GET_WRITE_OUT.

` + exitCodesHelp

// newRoot returns the flotilla command with every subcommand. Each call
// makes a new tree: flags hold their values in it.
func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "flotilla",
		Short:         "Flotilla's command-line client",
		Long:          rootLong,
		Version:       cli.Version("flotilla"),
		SilenceErrors: true, // reportError prints them
		SilenceUsage:  true, // a usage error says where the usage is
		Args:          cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q", args[0])
			}
			cmd.SetOut(cmd.ErrOrStderr())
			_ = cmd.Usage()
			return usagef("no command given")
		},
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{msg: err.Error()} })
	root.AddCommand(
		newDemoCmd(), newPutCmd(), newGetCmd(), newDelCmd(), newTxnCmd(), newCASCmd(), newScanCmd(), newWatchCmd(),
		newCompactCmd(), newBackupCmd(), newRestoreCmd(), newLeaseCmd(), newStatusCmd(), newNodesCmd(), newShardsCmd(),
		newDrainCmd(), newShardCmd(), newNodeCmd(), newCertsCmd(), newBenchCmd(), newVersionCmd(),
	)
	nameEnv(root)
	return root
}

// newVersionCmd is 'flotilla version', which prints what --version does.
func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print flotilla's module version and VCS revision (also --version)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), cli.Version("flotilla"))
			return nil
		},
	}
}

// envAnnotation is the pflag annotation holding a flag's environment
// variable; sharedEnv marks a flag whose variable every command shares.
const (
	envAnnotation = "flotilla_env"
	sharedEnv     = "flotilla_env_shared"
)

// shareEnv makes flag name of fs read FLOTILLA_NAME, the same variable in
// every command (the flags that say how to reach the fleet).
func shareEnv(fs *pflag.FlagSet, name string) {
	_ = fs.SetAnnotation(name, sharedEnv, []string{cli.EnvName(name)})
}

// nameEnv names the environment variable of every flag of cmd and its
// subcommands (FLOTILLA_, the command's path without "flotilla", the
// flag, in upper case with '_' between; or the shared name), and adds it
// to the flag's help. It also wraps each command's description
// (wrapText).
func nameEnv(cmd *cobra.Command) {
	path := strings.Fields(cmd.CommandPath())[1:]
	prefix := cli.EnvPrefix
	if len(path) > 0 {
		prefix += strings.ToUpper(strings.ReplaceAll(strings.Join(path, "_"), "-", "_")) + "_"
	}
	cmd.Long = wrapText(cmd.Long, helpWidth)
	cmd.LocalFlags().VisitAll(func(f *pflag.Flag) {
		name := cli.EnvNameWithPrefix(prefix, f.Name)
		if s := f.Annotations[sharedEnv]; len(s) > 0 {
			name = s[0]
		}
		_ = cmd.Flags().SetAnnotation(f.Name, envAnnotation, []string{name})
		f.Usage += " [" + name + "]"
	})
	for _, sub := range cmd.Commands() {
		nameEnv(sub)
	}
}

// applyEnv fills every flag of cmd not set on the command line from its
// environment variable, and reports every bad value at once.
func applyEnv(cmd *cobra.Command) error {
	var bad []string
	fs := cmd.Flags()
	fs.VisitAll(func(f *pflag.Flag) {
		env := f.Annotations[envAnnotation]
		if f.Changed || len(env) == 0 {
			return
		}
		if v, ok := os.LookupEnv(env[0]); ok {
			if err := fs.Set(f.Name, v); err != nil {
				bad = append(bad, fmt.Sprintf("%s=%q: %v", env[0], v, err))
			}
		}
	})
	if len(bad) > 0 {
		return usagef("%s", strings.Join(bad, "; "))
	}
	return nil
}

// tracing is the process's tracing, off unless OTEL_EXPORTER_OTLP_ENDPOINT
// is set; the router's connections carry its client spans. Set by run.
var tracing *telemetry.Tracing

// runFunc is the body of a command: cobra has parsed its flags and
// checked its arguments; out is its standard output.
type runFunc func(ctx context.Context, cmd *cobra.Command, args []string, out io.Writer) error

// run makes a command's RunE from body: it fills the flags from the
// environment, runs body as one trace (a root span named after the
// command, the router's RPCs as its children, exported before it
// returns), and marks body's errors as the run's (runError) unless they
// are usage errors.
func run(body runFunc) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if err := applyEnv(cmd); err != nil {
			return err
		}
		ctx := cmd.Context()
		t, err := telemetry.StartTracing(ctx, "flotilla", "")
		if err != nil {
			return &runError{err}
		}
		tracing = t
		defer func() {
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = t.Shutdown(fctx)
		}()
		ctx, span := t.Start(ctx, cmd.CommandPath())
		defer span.End()
		err = body(ctx, cmd, args, cmd.OutOrStdout())
		var ue *usageError
		if err == nil || errors.As(err, &ue) {
			return err
		}
		return &runError{err}
	}
}

// reportError prints err, the error of executing cmd, to stderr and
// returns the exit status (exitCode).
func reportError(cmd *cobra.Command, err error, stderr io.Writer) int {
	code := exitCode(err)
	var pe *printedError
	if err == nil || errors.As(err, &pe) {
		return code
	}
	name := "flotilla"
	if cmd != nil {
		name = cmd.CommandPath()
	}
	fmt.Fprintf(stderr, "%s: %v\n", name, err)
	if code == exitUsage {
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", name)
	}
	return code
}

// noArgs accepts no positional argument.
func noArgs(_ *cobra.Command, args []string) error { return nArgs(0)(nil, args) }

// nArgs accepts any of the numbers of positional arguments want.
func nArgs(want ...int) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		for _, n := range want {
			if len(args) == n {
				return nil
			}
		}
		return usagef("wrong number of arguments: %d given (%s), want %s", len(args), quoteArgs(args), counts(want))
	}
}

// helpWidth is the width to which wrapText folds a command's description.
const helpWidth = 80

// wrapText folds every line of s longer than width at spaces, so that a
// description written as one long line per paragraph reads well in a
// terminal. A line that starts with a space (a table, an example) is
// left alone. A fold never leaves one word alone on its last line: the
// word before it goes down too. (A description folded by hand must fit
// in width, or each of its lines is folded again on its own;
// TestHelpLeavesNoWordAlone checks every command's.)
func wrapText(s string, width int) string {
	lines := strings.Split(s, "\n")
	var out []string
	for _, line := range lines {
		if len(line) <= width || strings.HasPrefix(line, " ") {
			out = append(out, line)
			continue
		}
		var folded []string
		cur := ""
		for _, w := range strings.Fields(line) {
			if cur != "" && len(cur)+1+len(w) > width {
				folded = append(folded, cur)
				cur = ""
			}
			if cur != "" {
				cur += " "
			}
			cur += w
		}
		if n := len(folded); n > 0 && !strings.Contains(cur, " ") {
			if i := strings.LastIndexByte(folded[n-1], ' '); i > 0 {
				folded[n-1], cur = folded[n-1][:i], folded[n-1][i+1:]+" "+cur
			}
		}
		out = append(append(out, folded...), cur)
	}
	return strings.Join(out, "\n")
}
