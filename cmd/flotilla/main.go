// Command flotilla is Flotilla's command-line client: a local demo fleet,
// key-value commands through the router, and cluster inspection through
// placement. It is built on cobra and pflag, as etcdctl and kubectl are.
//
//	flotilla demo                       start a local fleet, run a workload, print results
//	flotilla put KEY [VALUE]            write a key, the value from standard input without VALUE (--lease ID: attached to a lease; --ttl D: on a fresh lease of D)
//	flotilla get KEY [END]              read a key, or a range at one revision (--prefix, --from-key, --limit N, --rev R,
//	                                    --keys-only, --print-value-only, --count-only)
//	flotilla del KEY [END]              delete a key or a range, printing how many (--prefix, --from-key, --prev-kv)
//	flotilla txn < INPUT                compare-then-else on one shard, in etcdctl's txn format from standard input
//	flotilla cas KEY EXPECTED NEW       compare-and-swap (--absent: KEY must not exist)
//	flotilla scan [--start S --end E]   list keys in order
//	flotilla watch KEY                  print writes to KEY as they happen (--prefix, --rev R, --prev-kv, --progress D)
//	flotilla compact REV                compact the shards of [--start, --end) to revision REV
//	flotilla backup --dir DIR           a consistent backup of the whole key space at one revision
//	flotilla restore --dir DIR          check a backup, then write it into an empty fleet (--force, --verify-only)
//	flotilla lease SUBCOMMAND           grant TTL, revoke ID, keepalive ID [--once], timetolive ID [--keys] (alias ttl), list;
//	                                    IDs in hexadecimal, as etcdctl prints and takes them
//	flotilla status | nodes | shards    cluster state from placement
//	flotilla drain NODE                 move every replica and leadership off NODE
//	flotilla shard check|transfer-leader  the consistency check of a shard; move its leadership (--to NODE)
//	flotilla certs --dir DIR            create a development CA and mTLS certificates
//	flotilla bench SUBCOMMAND           the bench suite: runs flotilla-bench (cmd/flotilla-bench)
//	flotilla completion SHELL           a completion script for bash, zsh, fish or powershell
//	flotilla version                    the module version and VCS revision (also --version)
//
// Flags may come before or after a command's arguments; "--" ends them.
// --help prints a command's usage and every flag, with the environment
// variable it also reads, on standard output.
//
// Output: the read commands take -w table|simple|json (--write-out, as
// etcdctl's; --json is -w json). JSON writes keys and values in base64,
// as etcdctl's does, so binary keys round-trip, and every ID and revision
// as a number (lease IDs also as "lease_hex").
//
// Environment: the flags that say how to reach the fleet are shared by
// every command: --placement (FLOTILLA_PLACEMENT), --nodes of the
// key-value commands (FLOTILLA_NODES), --tls-cert, --tls-key, --tls-ca
// (FLOTILLA_TLS_CERT, ...), --timeout (FLOTILLA_TIMEOUT) and
// --consistency (FLOTILLA_CONSISTENCY). Every other flag reads a
// variable named after its command: FLOTILLA_DEMO_DIR, FLOTILLA_CERTS_DIR,
// FLOTILLA_BACKUP_DIR, FLOTILLA_LEASE_KEEPALIVE_ONCE. The command line
// wins over the environment.
//
// Exit status, the same in every output format: 0 success; 1 a failure
// the fleet reported (a transaction across shards, a compacted revision);
// 2 bad usage (nothing was sent); 3 not found or compare failed (get of an
// absent key, an unknown lease, cas not swapped, txn whose compares
// failed: unlike etcdctl, txn exits 3 after printing FAILURE); 4
// unreachable or unavailable (no placement address or node answered, a
// shard had no leader, --timeout passed).
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "bench" {
		// Another program takes this process over (see execBench): its
		// flags are its own, so cobra does not see them.
		os.Exit(runBench(os.Args[2:], os.Stderr))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := execute(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// execute runs the command line args (without the program's name) with
// the given standard streams and returns its exit status. Errors are
// printed to stderr, a usage error with where to find the usage.
func execute(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRoot()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	return reportError(cmd, err, stderr)
}
