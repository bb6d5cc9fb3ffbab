// Package cli holds what every Flotilla binary shares on its command line:
// flags that also read environment variables, byte sizes, validation that
// reports every problem at once, logger setup, and the version a binary
// prints for --version.
//
// With Parse, a flag named --data-dir also reads FLOTILLA_DATA_DIR when it
// is not given on the command line; the command line wins. ParseWithPrefix
// reads another prefix (flotilla-bench: FLOTILLA_BENCH_DATA_DIR), for a
// program whose flags must not take a server's variables. --help prints
// every flag with its environment variable and default.
//
// Version reports the module version and the VCS revision the go
// command stamped into the binary (internal/buildinfo); the
// servers register --version with VersionFlag, the flotilla CLI (on cobra,
// cmd/flotilla) prints the same line.
package cli
