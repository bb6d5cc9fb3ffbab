package buildinfo

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

func TestFromBuild(t *testing.T) {
	stamped := &debug.BuildInfo{GoVersion: "go1.99", Main: debug.Module{Path: "github.com/flotilla-kv/flotilla", Version: "(devel)"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "aaaa"}, {Key: "vcs.time", Value: "2026-12-05T07:00:00Z"}, {Key: "vcs.modified", Value: "true"}}}
	pseudo := &debug.BuildInfo{GoVersion: "go1.99", Main: debug.Module{Path: "github.com/flotilla-kv/flotilla", Version: "v0.0.0-20261205170505-6607e103e47a+dirty"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "6607e103e47abc3d6ba2f5d0c8c3ef9f972d6fa1"}, {Key: "vcs.modified", Value: "true"}}}
	unstamped := &debug.BuildInfo{GoVersion: "go1.99", Main: debug.Module{Path: "github.com/flotilla-kv/flotilla", Version: "(devel)"}}
	for _, tc := range []struct {
		name             string
		info             *debug.BuildInfo
		linkRev, linkMod string
		want             Info
	}{
		{"stamped", stamped, "", "",
			Info{Module: "github.com/flotilla-kv/flotilla", Version: "(devel)", Revision: "aaaa", Time: "2026-12-05T07:00:00Z", Modified: true, RevisionFrom: FromVCS, GoVersion: "go1.99"}},
		{"not stamped: the revision stays unknown", unstamped, "", "",
			Info{Module: "github.com/flotilla-kv/flotilla", Version: "(devel)", GoVersion: "go1.99"}},
		{"not stamped, linked", unstamped, "bbbb", "false",
			Info{Module: "github.com/flotilla-kv/flotilla", Version: "(devel)", Revision: "bbbb", RevisionFrom: FromLinker, GoVersion: "go1.99"}},
		{"an enclosing checkout's stamp: the linked revision wins, without its time and state", stamped, "bbbb", "",
			Info{Module: "github.com/flotilla-kv/flotilla", Version: "(devel)", Revision: "bbbb", RevisionFrom: FromLinker, GoVersion: "go1.99"}},
		{"an enclosing checkout's pseudo-version goes with its stamp", pseudo, "bbbb", "",
			Info{Module: "github.com/flotilla-kv/flotilla", Version: "(devel)", Revision: "bbbb", RevisionFrom: FromLinker, GoVersion: "go1.99"}},
		{"the same revision both ways keeps its time", stamped, "aaaa", "false",
			Info{Module: "github.com/flotilla-kv/flotilla", Version: "(devel)", Revision: "aaaa", Time: "2026-12-05T07:00:00Z", RevisionFrom: FromLinker, GoVersion: "go1.99"}},
	} {
		if got := fromBuild(tc.info, tc.linkRev, tc.linkMod); got != tc.want {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.name, got, tc.want)
		}
	}
	if got := fromBuild(nil, "", ""); got.Version != "unknown" || got.Revision != "" || got.GoVersion == "" {
		t.Errorf("no build info: %+v", got)
	}
}

// TestBuildsInWorktrees builds a program that prints Read() in a
// throwaway git repository (this package's source under the module's
// path, no network) and in two linked worktrees of it at an older commit,
// one beside the checkout and one inside it, and checks what the package
// comment says: the checkout's build carries its HEAD; the go command
// stamps nothing in the worktree beside it and the enclosing checkout's
// HEAD in the one inside it (a go command that learns worktrees fails
// this: update the package comment); and the revision passed with
// -ldflags, as the package comment shows, is the worktree's own in both.
func TestBuildsInWorktrees(t *testing.T) {
	if testing.Short() {
		t.Skip("builds four binaries")
	}
	gitPath, err := exec.LookPath("git")
	if err != nil {
		t.Skip("no git on $PATH")
	}
	src, err := os.ReadFile("buildinfo.go")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	run := func(in, name string, env []string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir, cmd.Env = in, append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s in %s: %v\n%s", name, strings.Join(args, " "), in, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git := func(in string, args ...string) string {
		t.Helper()
		return run(in, gitPath, []string{"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1"},
			append([]string{"-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main"}, args...)...)
	}
	write := func(path, text string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(repo, "go.mod"), "module github.com/flotilla-kv/flotilla\n\ngo 1.22\n")
	write(filepath.Join(repo, "internal/buildinfo/buildinfo.go"), string(src))
	write(filepath.Join(repo, "cmd/printbuild/main.go"), `package main

import (
	"encoding/json"
	"os"

	"github.com/flotilla-kv/flotilla/internal/buildinfo"
)

func main() { json.NewEncoder(os.Stdout).Encode(buildinfo.Read()) }
`)
	git(dir, "init", "-q", repo)
	git(repo, "add", ".")
	git(repo, "commit", "-q", "-m", "first")
	older := git(repo, "rev-parse", "HEAD")
	write(filepath.Join(repo, "README"), "second\n")
	git(repo, "add", ".")
	git(repo, "commit", "-q", "-m", "second")
	head := git(repo, "rev-parse", "HEAD")
	beside, inside := filepath.Join(dir, "beside"), filepath.Join(repo, "inside")
	git(repo, "worktree", "add", "-q", "--detach", beside, older)
	git(repo, "worktree", "add", "-q", "--detach", inside, older)

	// build builds and runs the program in tree, with the go command's
	// own settings (this machine's GOFLAGS may say -buildvcs=false).
	build := func(tree string, ldflags string) Info {
		t.Helper()
		bin := filepath.Join(t.TempDir(), "printbuild")
		env := []string{"GOFLAGS=", "GOWORK=off", "GOTOOLCHAIN=local", "GOPROXY=off"}
		run(tree, "go", env, "build", "-buildvcs=true", "-ldflags="+ldflags, "-o", bin, "./cmd/printbuild")
		var b Info
		if err := json.Unmarshal([]byte(run(tree, bin, nil)), &b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	if b := build(repo, ""); b.Revision != head || b.RevisionFrom != FromVCS {
		t.Errorf("the checkout's build: %+v, want revision %s from the go command", b, head)
	}
	if b := build(beside, ""); b.Revision != "" {
		t.Errorf("the worktree beside the checkout (at %s): %+v; the package comment says the go command stamps nothing", older, b)
	}
	if b := build(inside, ""); b.Revision != head || !strings.Contains(b.Version, head[:12]) {
		t.Errorf("the worktree inside the checkout (at %s): %+v; the package comment says the go command stamps the checkout's %s", older, b, head)
	}
	for _, tree := range []string{beside, inside} {
		rev := git(tree, "rev-parse", "HEAD")
		flags := "-X github.com/flotilla-kv/flotilla/internal/buildinfo.linkRevision=" + rev +
			" -X github.com/flotilla-kv/flotilla/internal/buildinfo.linkModified=false"
		if b := build(tree, flags); b.Revision != older || b.RevisionFrom != FromLinker || b.Time != "" || b.Modified || strings.Contains(b.Version, head[:12]) {
			t.Errorf("%s built with -ldflags naming %s: %+v, want that revision from the linker", tree, rev, b)
		}
	}
}
