package main

import (
	"fmt"
	"os"
	"syscall"

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
