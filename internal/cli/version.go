package cli

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"

	"github.com/flotilla-kv/flotilla/internal/buildinfo"
)

// Version returns the one line a binary named program prints for
// --version, e.g.
//
//	flotilla (devel) github.com/flotilla-kv/flotilla commit 1b2c...e9f0 (2026-12-05T07:00:00Z, modified) go1.26.8 linux/amd64
//
// "commit unknown" when the build recorded no revision: built with
// -buildvcs=false, outside git, or in a linked git worktree, where the go
// command stamps none (see internal/buildinfo); "-ldflags" among the notes
// after a revision the build passed to the linker rather than the go
// command stamped.
func Version(program string) string {
	b := buildinfo.Read()
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s %s", program, b.Version)
	if b.Module != "" {
		fmt.Fprintf(&sb, " %s", b.Module)
	}
	if b.Revision == "" {
		sb.WriteString(" commit unknown")
	} else {
		fmt.Fprintf(&sb, " commit %s", b.Revision)
		var notes []string
		if b.RevisionFrom == buildinfo.FromLinker {
			notes = append(notes, "-ldflags")
		}
		if b.Time != "" {
			notes = append(notes, b.Time)
		}
		if b.Modified {
			notes = append(notes, "modified")
		}
		if len(notes) > 0 {
			fmt.Fprintf(&sb, " (%s)", strings.Join(notes, ", "))
		}
	}
	fmt.Fprintf(&sb, " %s %s/%s", b.GoVersion, runtime.GOOS, runtime.GOARCH)
	return sb.String()
}

// VersionFlag registers --version on fs: given on the command line, it
// prints Version(program) to standard output and exits the process with
// status 0, as --help does, without looking at the other flags after it.
// It is never read from the environment (Parse skips it).
func VersionFlag(fs *flag.FlagSet, program string) {
	fs.Var(&versionFlag{program: program, out: os.Stdout, exit: os.Exit}, "version", "print the version and VCS revision of this binary and exit")
}

// versionFlag is the value of --version (see VersionFlag).
type versionFlag struct {
	program string
	out     io.Writer
	exit    func(int)
}

func (*versionFlag) String() string   { return "" }
func (*versionFlag) IsBoolFlag() bool { return true }
func (*versionFlag) noEnvironment()   {}

// Set prints the version and exits, unless the value is false.
func (v *versionFlag) Set(s string) error {
	if s == "false" {
		return nil
	}
	fmt.Fprintln(v.out, Version(v.program))
	v.exit(0)
	return nil
}

// noEnvironment marks a flag value that Parse never fills from the
// environment and PrintUsage lists without a variable.
type noEnvironment interface{ noEnvironment() }
