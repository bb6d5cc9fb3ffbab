// Command flotilla-bench is Flotilla's bench suite (package bench) on the
// command line: Flotilla against etcd, the engine alone, idle shards, and
// failover.
//
//	flotilla-bench compare [flags]    Flotilla and etcd under one workload, one table with the ratio
//	flotilla-bench engine [flags]     the multiraft engine in process
//	flotilla-bench idle [flags]       CPU and memory of a fleet of idle shards
//	flotilla-bench failover [flags]   per-shard unavailability after SIGKILL of a leader
//	flotilla-bench etcd-tool [flags]  Flotilla's etcd API and etcd under etcd's benchmark tool
//	flotilla-bench curve [flags]      Flotilla and etcd at 1, 10, 100 and 1,000 clients: a table and plots
//	flotilla-bench driver-check [flags]  etcd's benchmark tool beside the suite's etcd driver, on the same etcd
//
// Users run it as 'flotilla bench ...': the flotilla client executes
// flotilla-bench found next to itself, then on $PATH. It is a binary of
// its own so that the client does not link the bench's etcd client and
// plotting libraries (bench/README.md gives the sizes). It finds shardnode
// and placementd next to itself, then on $PATH, or in --bin; `make build`
// puts every binary in ./bin. It exits 0 on success, 1 with a one-line
// error otherwise and 2 for a usage error.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"

	"github.com/flotilla-kv/flotilla/internal/cli"
)

const benchSummary = `flotilla bench SUBCOMMAND [flags]: the bench suite (see bench/README.md).
('flotilla bench' runs this program, flotilla-bench, installed beside flotilla.)

Subcommands:
  compare   run workloads against a local Flotilla fleet and a local etcd cluster, in turn; one table with both and the ratio
  engine    the in-process engine benchmark: one engine, single-replica groups, fsync on, thousands of proposers
  idle      a 3-node fleet holding many idle shards: CPU and memory per node
  failover  steady writes, SIGKILL of the node with the most leaders: per-shard unavailability
  etcd-tool Flotilla's etcd API and etcd driven by etcd's own benchmark tool; one table with the ratio
  curve     compare at several client counts (1, 10, 100, 1000) in one invocation: a markdown table and plots
  driver-check  etcd's own benchmark tool and the suite's etcd driver in turn on the same etcd; both figures and their ratio

Run 'flotilla bench SUBCOMMAND --help' for the flags of each.`

// benchCommands are the subcommands of 'flotilla bench'.
var benchCommands = map[string]func(ctx context.Context, args []string, out io.Writer) error{
	"compare":      runBenchCompare,
	"engine":       runBenchEngine,
	"idle":         runBenchIdle,
	"failover":     runBenchFailover,
	"etcd-tool":    runBenchEtcdTool,
	"curve":        runBenchCurve,
	"driver-check": runBenchDriverCheck,
}

func runBench(ctx context.Context, args []string, out io.Writer) error {
	if len(args) > 0 && (args[0] == "--version" || args[0] == "version") {
		fmt.Fprintln(out, cli.Version("flotilla-bench"))
		return nil
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(os.Stderr, benchSummary)
		if len(args) == 0 {
			return errUsage
		}
		return flag.ErrHelp
	}
	run, ok := benchCommands[args[0]]
	if !ok {
		fmt.Fprintf(os.Stderr, "flotilla bench: unknown subcommand %q\n\n%s\n", args[0], benchSummary)
		return errUsage
	}
	return run(ctx, args[1:], out)
}

// parseBenchFlags parses args into fs (and the environment, FLOTILLA_BENCH_
// and the flag's name, see internal/cli); a usage error is printed and
// becomes errUsage.
func parseBenchFlags(fs *flag.FlagSet, args []string, summary string) error {
	fs.SetOutput(os.Stderr)
	if err := cli.ParseWithPrefix(fs, args, summary, "FLOTILLA_BENCH_"); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		fmt.Fprintln(os.Stderr, err)
		return errUsage
	}
	return nil
}

// isTerminal reports whether out is a terminal, where progress redraws
// one line.
func isTerminal(out io.Writer) bool {
	f, ok := out.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// errUsage marks a usage error (exit status 2); its message was printed.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := runBench(ctx, os.Args[1:], os.Stdout)
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "flotilla bench: %v\n", err)
		os.Exit(1)
	}
}

// report prints a bench's table and, with jsonPath, writes record there.
func report(out io.Writer, res interface{ WriteTable(io.Writer) }, record any, jsonPath string) error {
	res.WriteTable(out)
	if jsonPath == "" {
		return nil
	}
	if err := writeJSONFile(jsonPath, record); err != nil {
		return err
	}
	fmt.Fprintf(out, "JSON: %s\n", jsonPath)
	return nil
}

// runIn runs a bench with its data in dir (a new temporary directory
// named after pattern, removed at the end, when dir is empty) and reports
// its result, as JSON too with jsonPath.
func runIn[R interface{ WriteTable(io.Writer) }](out io.Writer, dir, pattern, jsonPath string, run func(dir string) (R, error)) error {
	dir, cleanup, err := benchDir(dir, pattern)
	if err != nil {
		return err
	}
	defer cleanup()
	res, err := run(dir)
	if err != nil {
		return err
	}
	return report(out, res, res, jsonPath)
}

// benchDir returns dir, created if missing, or a new temporary directory
// that cleanup removes.
func benchDir(dir, pattern string) (string, func(), error) {
	if dir != "" {
		return dir, func() {}, os.MkdirAll(dir, 0o755)
	}
	d, err := os.MkdirTemp("", pattern)
	if err != nil {
		return "", nil, err
	}
	return d, func() { _ = os.RemoveAll(d) }, nil
}

func writeJSONFile(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
