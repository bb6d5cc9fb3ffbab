// Package buildinfo reports what a binary knows about its own build (the
// module version and the VCS revision the go command stamped, from
// runtime/debug), for the --version line (internal/cli) and the
// flotilla_build_info metric (internal/telemetry) alike.
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// Info is what a binary knows about its own build, from
// runtime/debug.ReadBuildInfo: the main module's path and version, and
// the VCS revision the go command stamped (empty when it built outside a
// repository or with -buildvcs=false).
type Info struct {
	// Module is the main module's path, e.g. github.com/flotilla-kv/flotilla.
	Module string
	// Version is the main module's version: a tag such as v1.2.0 when
	// installed with 'go install ...@v1.2.0', "(devel)" for a build from a
	// working tree.
	Version string
	// Revision is the full VCS commit hash, Time its commit time
	// (RFC 3339), and Modified whether the working tree differed from it.
	Revision string
	Time     string
	Modified bool
	// GoVersion is the toolchain that built the binary.
	GoVersion string
}

// Read returns the running binary's Info. Fields the build
// did not record are empty ("unknown" for Version).
func Read() Info {
	b := Info{Version: "unknown", GoVersion: runtime.Version()}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	b.Module, b.GoVersion = info.Main.Path, info.GoVersion
	if info.Main.Version != "" {
		b.Version = info.Main.Version
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.time":
			b.Time = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}
