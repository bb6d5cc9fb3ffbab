package main

import (
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/flotilla-kv/flotilla/internal/launch"
)

// benchBinary is the program behind 'flotilla bench': the bench suite is
// a binary of its own, so that this client does not link the bench's
// etcd client and plotting libraries.
const benchBinary = "flotilla-bench"

// execBench replaces this process with flotilla-bench, found next to
// flotilla, then on $PATH, passing it args (what follows 'flotilla
// bench'), the environment and the terminal: its output, exit status and
// signals are the command's. It returns only if flotilla-bench cannot be
// run.
func execBench(args []string) error {
	bin, err := launch.FindBinary("", benchBinary)
	if err != nil {
		return fmt.Errorf("the bench suite is the program %s, installed beside flotilla ('make build' puts both in ./bin): %w", benchBinary, err)
	}
	err = syscall.Exec(bin, append([]string{bin}, args...), os.Environ())
	return fmt.Errorf("running %s: %w", bin, err)
}

// newBenchCmd is 'flotilla bench', listed with the other commands; main
// runs it before cobra parses anything, since every argument after
// "bench", --help included, is flotilla-bench's.
func newBenchCmd() *cobra.Command {
	return &cobra.Command{
		Use:                "bench SUBCOMMAND [flags]",
		Short:              "the bench suite: compare (Flotilla against etcd), engine, idle, failover, etcd-tool (runs flotilla-bench)",
		Long:               "flotilla bench SUBCOMMAND [flags]: runs the program flotilla-bench, installed beside flotilla, with these arguments; 'flotilla bench --help' is its help. Its flags read FLOTILLA_BENCH_ variables (FLOTILLA_BENCH_VALUE_SIZE).",
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return &runError{execBench(args)}
		},
	}
}

// runBench is main's 'flotilla bench ARGS': it returns only if
// flotilla-bench could not be run, with exit status 1.
func runBench(args []string, stderr io.Writer) int {
	fmt.Fprintf(stderr, "flotilla bench: %v\n", execBench(args))
	return exitError
}
