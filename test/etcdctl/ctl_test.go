package etcdctl

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// commandTimeout bounds one etcdctl command; etcdctl's own
// --command-timeout is set a little below it.
const commandTimeout = 30 * time.Second

// ctl runs the etcdctl binary bin against endpoints.
type ctl struct {
	bin       string
	endpoints []string
}

// args returns the global flags followed by args.
func (c ctl) args(args ...string) []string {
	return append([]string{"--endpoints=" + strings.Join(c.endpoints, ","),
		"--dial-timeout=5s", "--command-timeout=25s"}, args...)
}

// run runs etcdctl with args and stdin, failing t unless it exits 0, and
// returns its standard output.
func (c ctl) run(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, errOut, err := c.try(stdin, args...)
	if err != nil {
		t.Fatalf("etcdctl %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// try runs etcdctl with args and stdin and returns its standard output,
// its standard error and its exit error.
func (c ctl) try(stdin string, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, c.args(args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// expect runs etcdctl like run and fails t unless its standard output is
// exactly the lines want (each followed by a newline; none: empty).
func (c ctl) expect(t *testing.T, stdin string, args []string, want ...string) {
	t.Helper()
	got := c.run(t, stdin, args...)
	if w := joinLines(want); got != w {
		t.Fatalf("etcdctl %s:\ngot:\n%s\nwant:\n%s", strings.Join(args, " "), quoteLines(got), quoteLines(w))
	}
}

// joinLines returns the lines, each followed by a newline.
func joinLines(lines []string) string {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.String()
}

// quoteLines shows s one quoted line at a time, so that empty lines and
// trailing spaces are visible in a failure.
func quoteLines(s string) string {
	if s == "" {
		return "  (nothing)"
	}
	var b strings.Builder
	for _, l := range strings.SplitAfter(s, "\n") {
		if l != "" {
			fmt.Fprintf(&b, "  %q\n", l)
		}
	}
	return b.String()
}

// header is the response header etcdctl prints with -w json.
type header struct {
	ClusterID uint64 `json:"cluster_id"`
	MemberID  uint64 `json:"member_id"`
	Revision  int64  `json:"revision"`
}

// jsonKV is a key-value pair as etcdctl prints it with -w json (byte
// strings in base64, which encoding/json decodes into []byte).
type jsonKV struct {
	Key            []byte `json:"key"`
	Value          []byte `json:"value"`
	CreateRevision int64  `json:"create_revision"`
	ModRevision    int64  `json:"mod_revision"`
	Version        int64  `json:"version"`
	Lease          int64  `json:"lease"`
}

// runJSON runs etcdctl -w json with args and decodes its output into v.
func (c ctl) runJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out := c.run(t, "", append([]string{"-w", "json"}, args...)...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("etcdctl -w json %s: %v\noutput:\n%s", strings.Join(args, " "), err, out)
	}
}

// putRev puts key=value and returns the revision of the put.
func (c ctl) putRev(t *testing.T, key, value string) int64 {
	t.Helper()
	var r struct {
		Header header `json:"header"`
	}
	c.runJSON(t, &r, "put", key, value)
	if r.Header.Revision <= 0 {
		t.Fatalf("put %s: response header has revision %d", key, r.Header.Revision)
	}
	return r.Header.Revision
}

// background is an etcdctl process whose standard output is read line by
// line while it runs (etcdctl watch).
type background struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when stdout reached EOF

	mu struct {
		sync.Mutex
		lines []string
	}
	stderr lockedBuffer
}

// start starts etcdctl with args in the background; it is killed when t
// ends.
func (c ctl) start(t *testing.T, args ...string) *background {
	t.Helper()
	b := &background{cmd: exec.Command(c.bin, c.args(args...)...), done: make(chan struct{})}
	b.cmd.Stderr = &b.stderr
	out, err := b.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go b.read(out)
	t.Cleanup(func() {
		_ = b.cmd.Process.Kill()
		<-b.done
		_ = b.cmd.Wait()
	})
	return b
}

// read collects the lines of out until EOF.
func (b *background) read(out io.Reader) {
	defer close(b.done)
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		b.mu.Lock()
		b.mu.lines = append(b.mu.lines, sc.Text())
		b.mu.Unlock()
	}
}

// lines returns the lines read so far.
func (b *background) lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.mu.lines...)
}

// waitLines waits until the process has printed exactly want so far,
// polling with a deadline; it fails t as soon as the output can no longer
// become want (lines are only ever appended), or at the deadline.
func (b *background) waitLines(t *testing.T, want ...string) {
	t.Helper()
	fail := func(why string, got []string) {
		t.Helper()
		t.Fatalf("etcdctl %s: %s; printed:\n%s\nwant:\n%s\nstderr:\n%s", strings.Join(b.cmd.Args[1:], " "), why,
			quoteLines(joinLines(got)), quoteLines(joinLines(want)), b.stderr.String())
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := b.lines()
		n := min(len(got), len(want))
		if strings.Join(got[:n], "\n") != strings.Join(want[:n], "\n") || len(got) > len(want) {
			fail("the output differs", got)
		}
		if len(got) == len(want) {
			return
		}
		select {
		case <-b.done:
			if got := b.lines(); len(got) != len(want) {
				fail("the process ended", got)
			}
		case <-time.After(20 * time.Millisecond):
			if time.Now().After(deadline) {
				fail("not all of it within 20s", got)
			}
		}
	}
}

// lockedBuffer is a bytes.Buffer safe for one writer and other readers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
