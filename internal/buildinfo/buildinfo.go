// Package buildinfo reports what a binary knows about its own build (the
// module version and the VCS revision the go command stamped, from
// runtime/debug), for the --version line (internal/cli) and the
// flotilla_build_info metric (internal/telemetry) alike.
//
// Where the go command stamps no revision. cmd/go takes a directory as the
// root of a git repository only when its .git is a directory
// (cmd/go/internal/vcs: the root name ".git" with isDir true), and a
// linked worktree's .git (git worktree add) is a file naming the real
// git directory. So a binary built in a linked worktree carries no
// vcs.revision, even with -buildvcs=true (golang/go#58218, open as of
// go1.26); worse, a worktree inside another checkout's directory is
// stamped with that checkout's revision and modified state, since the
// go command walks up to the enclosing .git directory. Builds with
// -buildvcs=false (also through GOFLAGS) or outside a repository carry
// none either. Read never guesses one: a binary that does not know its
// revision says so. A build that knows it (git rev-parse HEAD in the
// directory it builds, which follows a worktree's .git file) can pass it
// at link time, and then it wins over what the go command stamped:
//
//	go build -ldflags "-X github.com/flotilla-kv/flotilla/internal/buildinfo.linkRevision=$(git rev-parse HEAD) \
//	  -X github.com/flotilla-kv/flotilla/internal/buildinfo.linkModified=$(test -z "$(git status --porcelain)" && echo false || echo true)" ./cmd/...
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
)

// Set by the linker (-ldflags -X, see the package comment); empty when
// the build passed nothing. linkModified is "true" or "false".
var linkRevision, linkModified string

// Where Info.Revision came from.
const (
	// FromVCS: the go command stamped it (vcs.revision in the build info).
	FromVCS = "vcs"
	// FromLinker: the build passed it with -ldflags -X (linkRevision).
	FromLinker = "ldflags"
)

// Info is what a binary knows about its own build, from
// runtime/debug.ReadBuildInfo: the main module's path and version, and
// the VCS revision the go command stamped or the build passed to the
// linker (empty when neither did: see the package comment).
type Info struct {
	// Module is the main module's path, e.g. github.com/flotilla-kv/flotilla.
	Module string
	// Version is the main module's version: a tag such as v1.2.0 when
	// installed with 'go install ...@v1.2.0'; for a build from a working
	// tree, a pseudo-version of the stamped revision
	// (v0.0.0-20261205170224-ecf77b45f15c, +dirty when modified) or
	// "(devel)" when none was stamped.
	Version string
	// Revision is the full VCS commit hash, Time its commit time
	// (RFC 3339; empty when the linker passed another revision than the
	// go command stamped), and Modified whether the working tree differed
	// from it (false when the build did not say).
	Revision string
	Time     string
	Modified bool
	// RevisionFrom says where Revision came from: FromVCS, FromLinker, or
	// "" when the binary does not know its revision.
	RevisionFrom string
	// GoVersion is the toolchain that built the binary.
	GoVersion string
}

// Read returns the running binary's Info. Fields the build did not
// record are empty ("unknown" for Version). Safe for concurrent use.
func Read() Info {
	info, _ := debug.ReadBuildInfo()
	return fromBuild(info, linkRevision, linkModified)
}

// fromBuild returns the Info of info (nil: no build info) and the
// revision and modified state the linker was given (empty: none). A
// revision from the linker replaces the go command's stamp, with its time
// and modified state when it names another commit (the go command
// stamped an enclosing checkout's), and so does the pseudo-version the go
// command derived from that commit, which becomes "(devel)".
func fromBuild(info *debug.BuildInfo, linkRev, linkMod string) Info {
	b := Info{Version: "unknown", GoVersion: runtime.Version()}
	if info != nil {
		b.Module, b.GoVersion = info.Main.Path, info.GoVersion
		if info.Main.Version != "" {
			b.Version = info.Main.Version
		}
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Revision, b.RevisionFrom = s.Value, FromVCS
			case "vcs.time":
				b.Time = s.Value
			case "vcs.modified":
				b.Modified = s.Value == "true"
			}
		}
	}
	if linkRev != "" {
		if linkRev != b.Revision {
			b.Time, b.Modified = "", false
			// The go command derives a pseudo-version from the revision it
			// stamped (v0.0.0-TIME-REV12[+dirty]): that of another commit.
			if b.Revision != "" && strings.Contains(b.Version, b.Revision[:min(12, len(b.Revision))]) {
				b.Version = "(devel)"
			}
		}
		b.Revision, b.RevisionFrom = linkRev, FromLinker
		if linkMod != "" {
			b.Modified = linkMod == "true"
		}
	}
	return b
}
