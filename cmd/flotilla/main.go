// Command flotilla is Flotilla's command-line client: a local demo fleet,
// key-value commands through the router, and cluster inspection through
// placement.
//
//	flotilla demo                       start a local fleet, run a workload, print results
//	flotilla put KEY VALUE              write a key (--lease ID: attached to a lease; --ttl D: on a fresh lease of D)
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
//	flotilla certs --dir DIR            create a development CA and mTLS certificates
//	flotilla bench SUBCOMMAND           the bench suite: runs flotilla-bench (cmd/flotilla-bench)
//
// Every command takes --placement (or FLOTILLA_PLACEMENT) to name the
// placement service (every replica's address: commands fail over between
// them), --tls-cert, --tls-key and --tls-ca for mutual TLS, and --json for
// machine-readable output (watch: one JSON object per line); put, del
// and cas print the write's revision (put --ttl also the lease it granted,
// del how many keys it deleted); txn prints SUCCESS or FAILURE, exiting 0
// either way; the key-value commands also take --nodes (or
// FLOTILLA_NODES), shardnodes that give routes while placement is down. Flags may come before or
// after a command's arguments; "--" ends them. It exits 0 on success and 1
// with a one-line error otherwise, an absent key or lease included (2 for
// usage errors: a malformed lease ID or TTL among them).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/flotilla-kv/flotilla/internal/telemetry"
)

const usage = `flotilla: the Flotilla command-line client.

Usage: flotilla COMMAND [flags] [args]

Commands:
  demo      start placementd and shardnodes locally, run a workload through the router, print the results
  put       put KEY VALUE (--lease ID: attach KEY to lease ID; --ttl 30s: on a fresh lease of 30s, whose ID it prints)
  get       get KEY (--rev R: as of revision R); a range at one revision, with revisions and leases: get KEY END,
            --prefix KEY, --from-key KEY (--limit N, --keys-only, --print-value-only, --count-only)
  del       delete KEY, or a range: del KEY END, --prefix KEY, --from-key KEY; prints how many (--prev-kv: and which)
  txn       a compare-then-else transaction on one shard, read from standard input in etcdctl's format
            (compares, empty line, success operations, empty line, failure operations; see 'flotilla txn --help')
  cas       compare-and-swap KEY EXPECTED NEW (with --absent: KEY NEW, KEY must not exist)
  scan      scan keys in [--start, --end) in order, at most --limit (--end before --start is refused)
  watch     watch KEY: print every write as it happens, in revision order, until interrupted
            (--prefix: every key starting with KEY; --rev R: from revision R; --prev-kv; --progress 1s)
  compact   compact REV: refuse reads and watches below revision REV in the shards of [--start, --end), prune older versions
  backup    backup --dir DIR: every key as of one revision into DIR, with a manifest of checksums
  restore   restore --dir DIR: check a backup against its manifest, then put its keys into an empty fleet (--force, --verify-only)
  lease     leases, as etcdctl's: grant TTL, revoke ID, keepalive ID (--once), timetolive ID (--keys; alias ttl), list
            (IDs in hexadecimal, as 'lease grant' prints them; see 'flotilla lease --help')
  status    cluster status from placement
  nodes     list nodes
  shards    list shards with their ranges, replicas and leaders
  drain     drain NODE: move its replicas and leaderships away (--undo to stop)
  bench     the bench suite: compare (Flotilla against etcd), engine, idle, failover (see 'flotilla bench --help';
            runs the program flotilla-bench, installed beside flotilla)
  certs     create a development CA and certificates for mutual TLS (--tls-cert, --tls-key, --tls-ca)

Flags may come before or after the arguments ('flotilla get KEY --consistency lease');
'--' ends them, for a KEY or VALUE that starts with '-'. --placement takes every
placement replica's address (commands fail over between them); --nodes names
shardnodes that key-value commands ask for routes while placement is down.

Run 'flotilla COMMAND --help' for the flags of a command.`

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, out io.Writer) error
}

var commands = []command{
	{"demo", "flotilla demo [flags]: start a local fleet, run a workload, print results", runDemo},
	{"put", "flotilla put [flags] KEY VALUE", runPut},
	{"get", "flotilla get [flags] KEY [END]", runGet},
	{"del", "flotilla del [flags] KEY [END]", runDel},
	{"txn", "flotilla txn [flags] < INPUT", runTxn},
	{"cas", "flotilla cas [flags] KEY EXPECTED NEW  |  flotilla cas --absent [flags] KEY NEW", runCAS},
	{"scan", "flotilla scan [flags]", runScan},
	{"watch", "flotilla watch [flags] KEY", runWatch},
	{"compact", "flotilla compact [flags] REV", runCompact},
	{"backup", "flotilla backup --dir DIR [flags]", runBackup},
	{"restore", "flotilla restore --dir DIR [flags]", runRestore},
	{"lease", "flotilla lease SUBCOMMAND [flags] [args]", runLease},
	{"status", "flotilla status [flags]", runStatus},
	{"nodes", "flotilla nodes [flags]", runNodes},
	{"shards", "flotilla shards [flags]", runShards},
	{"drain", "flotilla drain [flags] NODE", runDrain},
	{"certs", "flotilla certs --dir DIR [flags]: create a development CA and mTLS certificates", runCerts},
}

// errUsage marks a usage error (exit status 2); its message was printed.
var errUsage = errors.New("usage")

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		fmt.Fprintln(os.Stderr, usage)
		if len(os.Args) < 2 {
			os.Exit(2)
		}
		return
	}
	if os.Args[1] == "bench" {
		// Another program takes this process over (see execBench).
		fmt.Fprintf(os.Stderr, "flotilla bench: %v\n", execBench(os.Args[2:]))
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	for _, c := range commands {
		if c.name != os.Args[1] {
			continue
		}
		err := runTraced(ctx, c)
		switch {
		case err == nil, errors.Is(err, flag.ErrHelp):
			return
		case errors.Is(err, errUsage):
			os.Exit(2)
		default:
			fmt.Fprintf(os.Stderr, "flotilla %s: %v\n", c.name, err)
			os.Exit(1)
		}
	}
	fmt.Fprintf(os.Stderr, "flotilla: unknown command %q\n\n%s\n", os.Args[1], usage)
	os.Exit(2)
}

// tracing is the process's tracing, off unless OTEL_EXPORTER_OTLP_ENDPOINT
// is set; the router's connections carry its client spans. Set by
// runTraced; nil (off) in tests.
var tracing *telemetry.Tracing

// runTraced runs c as one trace: a root span for the command, the
// router's RPCs as its children, exported before the process exits.
func runTraced(ctx context.Context, c command) error {
	t, err := telemetry.StartTracing(ctx, "flotilla", "")
	if err != nil {
		return err
	}
	tracing = t
	defer func() {
		fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = t.Shutdown(fctx)
	}()
	ctx, span := t.Start(ctx, "flotilla "+c.name)
	defer span.End()
	return c.run(ctx, os.Args[2:], os.Stdout)
}
