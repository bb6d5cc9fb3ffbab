package sim

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/flotilla-kv/flotilla/multiraft"
)

// Actors: goroutine code run in lock-step with the simulator.
//
// The placement service is goroutine code: its scheduling loop, one
// executor per operator, stray removals and its RPC handlers block on
// timers, on the catalogue's Raft futures and on Admin calls to the nodes.
// So are the simulator's own stand-ins for the shardnodes' Admin service,
// heartbeat reporter and replica collector (admin.go, reporter.go,
// replicagc.go), written the same way.
// The simulator runs every such goroutine as an actor: at most one actor
// runs at a time, and only while the simulator's goroutine waits for it.
// An actor runs until it parks on a condition (a virtual time, an engine
// future, an RPC answer, a context) or ends; once per step (actors.run)
// the simulator resumes, lowest ID first, every parked actor whose
// condition holds, one after the other, until none is ready. Every
// blocking point of the service goes through its placement.Runtime or a
// placement.Connector client, and both park the calling actor, so which
// actor runs when, and what it sees, follows from the seed alone.
//
// An actor belongs to a process (a node's incarnation, or none for the
// simulator's own tools); when the process crashes its actors are killed,
// newest first (runtime.Goexit at their parking point, which runs their
// deferred calls), as the goroutines of a killed process vanish. A panic
// in an actor ends the run as a violation, with its stack.

// stepDuration is the virtual time one step stands for: the engines tick
// every stepsPerTick steps (100 ms, the shardnode's default tick).
const stepDuration = 50 * time.Millisecond

// epoch is the virtual clock's time at step 0.
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// stepsOf converts a duration to steps, rounding up.
func stepsOf(d time.Duration) int {
	return int((d + stepDuration - 1) / stepDuration)
}

// maxResumesPerStep bounds the resumes of one runActors: beyond it the
// actors are spinning without time passing (a busy loop), which on a real
// process would burn a core and never let anything else happen.
const maxResumesPerStep = 20000

// actor is one goroutine in lock-step with the simulator.
type actor struct {
	id    uint64
	name  string
	proc  *node // the process it runs in; nil for the simulator's tools
	start int   // step it started
	// resume hands the actor the right to run; true kills it.
	resume chan bool
	// ready is the condition it parked on.
	ready func() bool
	// sleeps counts its returns from Sleep, woke is the step of the last
	// (for the scheduling loop: its rounds).
	sleeps, woke int
	done         bool
	// stuck: it blocked on something that does not go through the
	// simulator; it is never resumed again.
	stuck bool
}

// actors is the simulator's set of actors. Only the simulator's goroutine
// and the one running actor touch it, never both at once: every hand-over
// goes through a channel.
type actors struct {
	s       *simulation
	nextID  uint64
	live    []*actor // by ID
	current *actor
	yield   chan struct{}
	timers  []*vtimer
	resumes int
	// panicked is what an actor panicked with, with its stack.
	panicked string
	// watchdog bounds, in wall-clock time, how long an actor may run
	// before it parks: only to diagnose an actor blocked on something
	// that does not go through the simulator, which would hang the run.
	watchdog *time.Timer
}

// actorWatchdog is the wall-clock time an actor may run between two parks.
const actorWatchdog = time.Minute

func newActors(s *simulation) *actors {
	t := time.NewTimer(actorWatchdog)
	t.Stop()
	return &actors{s: s, yield: make(chan struct{}), watchdog: t}
}

// spawn starts f as a new actor of proc (nil: the simulator's own). It
// runs at the next runActors. Callable from the simulator's goroutine or
// from the running actor.
func (as *actors) spawn(proc *node, name string, f func()) *actor {
	as.nextID++
	a := &actor{id: as.nextID, name: name, proc: proc, start: as.s.step, resume: make(chan bool), ready: always}
	as.live = append(as.live, a)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				as.panicked = fmt.Sprintf("actor %d (%s) panicked: %v\n%s", a.id, a.name, r, debug.Stack())
			}
			a.done = true
			as.current = nil
			as.yield <- struct{}{}
		}()
		if <-a.resume {
			runtime.Goexit()
		}
		f()
	}()
	return a
}

func always() bool { return true }

// park suspends the running actor until ready holds and the simulator
// resumes it. It must be called from an actor.
func (as *actors) park(ready func() bool) {
	a := as.current
	if a == nil {
		panic("sim: a blocking call outside an actor")
	}
	a.ready = ready
	as.current = nil
	as.yield <- struct{}{}
	if <-a.resume {
		runtime.Goexit()
	}
}

// run resumes every actor whose condition holds, lowest ID first, until
// none is ready. Called once per step by the simulator's goroutine.
func (as *actors) run() {
	as.fireTimers()
	as.resumes = 0
	for {
		a := as.next()
		if a == nil {
			return
		}
		as.resumes++
		if as.resumes > maxResumesPerStep {
			panic(fmt.Sprintf("sim: actors spin without time passing at step %d: %s", as.s.step, as.names()))
		}
		as.handOver(a, false)
	}
}

// next returns the ready actor with the lowest ID, dropping ended ones.
func (as *actors) next() *actor {
	n := 0
	var found *actor
	for _, a := range as.live {
		if a.done {
			continue
		}
		as.live[n] = a
		n++
		if found == nil && !a.stuck && a.ready() {
			found = a
		}
	}
	clear(as.live[n:])
	as.live = as.live[:n]
	return found
}

// handOver lets a run (or die, with kill) until it parks or ends.
func (as *actors) handOver(a *actor, kill bool) {
	if a.stuck {
		return
	}
	as.current = a
	a.ready = nil
	a.resume <- kill
	as.watchdog.Reset(actorWatchdog)
	select {
	case <-as.yield:
		as.watchdog.Stop()
	case <-as.watchdog.C:
		a.stuck = true
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		panic(fmt.Sprintf("sim: actor %d (%s) blocked outside the simulator at step %d\n%s", a.id, a.name, as.s.step, buf))
	}
	if as.panicked != "" {
		msg := as.panicked
		as.panicked = ""
		panic(msg)
	}
}

// kill kills every actor of proc, newest first.
func (as *actors) kill(proc *node) {
	for i := len(as.live) - 1; i >= 0; i-- {
		a := as.live[i]
		for j := 0; !a.done && !a.stuck && a.proc == proc; j++ {
			if j == 10 {
				panic(fmt.Sprintf("sim: actor %d (%s) keeps parking while it is killed", a.id, a.name))
			}
			as.handOver(a, true)
		}
	}
}

// killAll kills every actor (the end of a run).
func (as *actors) killAll() {
	for i := len(as.live) - 1; i >= 0; i-- {
		if a := as.live[i]; !a.done && !a.stuck {
			as.handOver(a, true)
		}
	}
	as.live = nil
}

// names lists the live actors, for diagnostics.
func (as *actors) names() string {
	var b strings.Builder
	for _, a := range as.live {
		if !a.done {
			fmt.Fprintf(&b, " %d:%s", a.id, a.name)
		}
	}
	return b.String()
}

// vtimer cancels a context when the virtual clock reaches at.
type vtimer struct {
	at     int
	cancel context.CancelCauseFunc
	dead   bool
}

// withTimeout is context.WithTimeout on the virtual clock: the simulator
// cancels the context (cause context.DeadlineExceeded) at the first step
// at or after d from now.
func (as *actors) withTimeout(parent context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(parent)
	t := &vtimer{at: as.s.step + max(1, stepsOf(d)), cancel: cancel}
	as.timers = append(as.timers, t)
	return ctx, func() {
		t.dead = true
		cancel(context.Canceled)
	}
}

// fireTimers cancels the contexts whose time has come, in creation order.
func (as *actors) fireTimers() {
	n := 0
	for _, t := range as.timers {
		switch {
		case t.dead:
		case t.at <= as.s.step:
			t.cancel(context.DeadlineExceeded)
		default:
			as.timers[n] = t
			n++
		}
	}
	clear(as.timers[n:])
	as.timers = as.timers[:n]
}

// sleep parks the running actor for d of virtual time or until ctx ends.
func (as *actors) sleep(ctx context.Context, d time.Duration) error {
	a := as.current
	at := as.s.step + max(1, stepsOf(d))
	as.park(func() bool { return as.s.step >= at || ctx.Err() != nil })
	a.sleeps++
	a.woke = as.s.step
	if as.s.step < at {
		return ctx.Err()
	}
	return nil
}

// wait parks the running actor until f resolves or ctx ends.
func (as *actors) wait(ctx context.Context, f *multiraft.Future) (any, error) {
	as.park(func() bool { return isDone(f) || ctx.Err() != nil })
	if isDone(f) {
		return f.Result()
	}
	return nil, ctx.Err()
}

// now is the virtual wall clock.
func (as *actors) now() time.Time {
	return epoch.Add(time.Duration(as.s.step) * stepDuration)
}

// procRuntime is the placement.Runtime of one placement process: the
// goroutines it starts are actors of that process.
type procRuntime struct {
	as   *actors
	proc *node
}

// Go implements placement.Runtime.
func (r procRuntime) Go(name string, f func()) { r.as.spawn(r.proc, name, f) }

// Sleep implements placement.Runtime. Under bugLostWakeup the
// scheduling loop's 40th sleep never ends (a timer lost).
func (r procRuntime) Sleep(ctx context.Context, d time.Duration) error {
	if a := r.as.current; r.as.s.cfg.bug == bugLostWakeup && a == r.proc.runner && a.sleeps >= 40 {
		d = 1 << 50
	}
	return r.as.sleep(ctx, d)
}

// WithTimeout implements placement.Runtime.
func (r procRuntime) WithTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return r.as.withTimeout(ctx, d)
}

// Wait implements placement.Runtime.
func (r procRuntime) Wait(ctx context.Context, f *multiraft.Future) (any, error) {
	return r.as.wait(ctx, f)
}
