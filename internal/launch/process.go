package launch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
)

// ErrRunning is returned by Process.Start when the process already runs.
var ErrRunning = errors.New("launch: process already running")

// ErrExited is returned, wrapped with the process's name, exit status and
// log, by Process.Exited, and so by the readiness waits of a process that
// died while starting.
var ErrExited = errors.New("launch: process exited")

// Process is one child process whose output goes to a log file: a
// shardnode or placementd replica of a Fleet (see Node), or any server a
// caller starts by hand, such as the bench suite's etcd members. Fill the
// exported fields, then Start; a Process may be started again after it
// exited (a restart), with new arguments. Its methods are safe for
// concurrent use; the exported fields are read by Start and must not
// change while it runs.
type Process struct {
	// Name names the process in errors ("shardnode-2", "etcd-m1").
	Name string
	// Bin is the executable's path (see FindBinary).
	Bin string
	// LogPath receives the process's stdout and stderr: truncated by the
	// first Start, appended to by restarts, so one file holds the
	// process's whole life.
	LogPath string
	// OwnProcessGroup starts the process in a process group of its own,
	// so that a Ctrl-C at the terminal reaches only this program, which
	// then stops its children in its own order (the bench). Off, the
	// terminal's signals reach the children too, which is what a test
	// wants: an interrupted `go test` then leaves no server behind.
	OwnProcessGroup bool

	state struct {
		sync.Mutex
		run    *run // the latest start; nil before the first
		starts int
	}
}

// run is one start of a Process.
type run struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process exited
	err  error         // its exit error; written before done is closed
}

// Start launches the process with args, without waiting for it to be
// ready (see WaitHTTP, Node.WaitReady). It returns ErrRunning if the
// process runs already.
func (p *Process) Start(args ...string) error {
	p.state.Lock()
	defer p.state.Unlock()
	if r := p.state.run; r != nil && !r.exited() {
		return fmt.Errorf("%w: %s (pid %d)", ErrRunning, p.Name, r.cmd.Process.Pid)
	}
	mode := os.O_CREATE | os.O_WRONLY | os.O_APPEND
	if p.state.starts == 0 {
		mode |= os.O_TRUNC
	}
	logf, err := os.OpenFile(p.LogPath, mode, 0o644)
	if err != nil {
		return fmt.Errorf("launch: log of %s: %w", p.Name, err)
	}
	cmd := exec.Command(p.Bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if p.OwnProcessGroup {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("launch: starting %s: %w", p.Name, err)
	}
	r := &run{cmd: cmd, done: make(chan struct{})}
	go func() {
		r.err = cmd.Wait()
		logf.Close()
		close(r.done)
	}()
	p.state.run = r
	p.state.starts++
	return nil
}

func (r *run) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// latest returns the latest run, or nil before the first Start.
func (p *Process) latest() *run {
	p.state.Lock()
	defer p.state.Unlock()
	return p.state.run
}

// Running reports whether the process was started and has not exited.
func (p *Process) Running() bool {
	r := p.latest()
	return r != nil && !r.exited()
}

// PID returns the process ID of the latest start, 0 before the first.
func (p *Process) PID() int {
	if r := p.latest(); r != nil {
		return r.cmd.Process.Pid
	}
	return 0
}

// Exited returns an error that says the process exited and how (its log
// named), or nil while it runs or before its first start: the check a
// readiness wait makes on every round, so a crash fails it at once.
func (p *Process) Exited() error {
	r := p.latest()
	if r == nil || !r.exited() {
		return nil
	}
	status := "exit status 0"
	if r.err != nil {
		status = r.err.Error()
	}
	return fmt.Errorf("%w: %s: %s (log %s)", ErrExited, p.Name, status, p.LogPath)
}

// Signal sends sig to the running process; it does nothing before the
// first start or after the exit.
func (p *Process) Signal(sig os.Signal) {
	if r := p.latest(); r != nil && !r.exited() {
		_ = r.cmd.Process.Signal(sig)
	}
}

// Terminate sends SIGTERM: a graceful stop. Wait collects the exit.
func (p *Process) Terminate() { p.Signal(syscall.SIGTERM) }

// Pause sends SIGSTOP: the process freezes with its sockets open, as a
// hung process would. Resume undoes it; Kill works on a paused process.
func (p *Process) Pause() { p.Signal(syscall.SIGSTOP) }

// Resume sends SIGCONT to a paused process.
func (p *Process) Resume() { p.Signal(syscall.SIGCONT) }

// Wait waits until the process exits and returns its exit error (nil for
// status 0, and before the first start). If ctx ends first it returns an
// error wrapping ctx.Err(): errors.Is(err, context.DeadlineExceeded)
// tells that the process still runs.
func (p *Process) Wait(ctx context.Context) error {
	r := p.latest()
	if r == nil {
		return nil
	}
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return fmt.Errorf("launch: %s still running: %w", p.Name, ctx.Err())
	}
}

// Kill sends SIGKILL and waits until the process is gone; it returns an
// error only if ctx ends first.
func (p *Process) Kill(ctx context.Context) error {
	p.Signal(syscall.SIGKILL)
	r := p.latest()
	if r == nil {
		return nil
	}
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("launch: %s survived SIGKILL: %w", p.Name, ctx.Err())
	}
}

// Log returns what the process wrote to its log so far ("" if there is
// no log yet).
func (p *Process) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}
