package multiraft

import "sync"

// Scheduling state of a group, kept in group.sched. A group is in the
// queue at most once, and processed by at most one worker at a time: a
// group enqueued while it is being processed is put back in the queue by
// the worker that finishes it.
const (
	schedQueued     uint32 = 1 << iota // in the queue, or to be re-queued
	schedProcessing                    // a worker holds it
)

// scheduler is the queue of groups with work, shared by all workers. It is
// the only way a group reaches a worker, which is what makes a group's
// RawNode single-owner without a lock per group.
type scheduler struct {
	mu struct {
		sync.Mutex
		queue   []*group // FIFO: queue[head:]
		head    int
		stopped bool
	}
	cond sync.Cond
}

func newScheduler() *scheduler {
	s := &scheduler{}
	s.cond.L = &s.mu.Mutex
	return s
}

// enqueue marks g as having work and queues it unless it is already queued
// or being processed. Safe for concurrent use; never blocks for long.
func (s *scheduler) enqueue(g *group) {
	for {
		st := g.sched.Load()
		if st&schedQueued != 0 {
			return
		}
		if g.sched.CompareAndSwap(st, st|schedQueued) {
			if st&schedProcessing == 0 {
				s.push(g)
			}
			return
		}
	}
}

func (s *scheduler) push(g *group) {
	s.mu.Lock()
	s.mu.queue = append(s.mu.queue, g)
	s.mu.Unlock()
	s.cond.Signal()
}

// pop moves up to max groups from the queue into dst, marking them as
// being processed. With wait it blocks until there is at least one or the
// scheduler stops; it returns false once stopped.
func (s *scheduler) pop(dst []*group, max int, wait bool) ([]*group, bool) {
	s.mu.Lock()
	for wait && !s.mu.stopped && s.mu.head == len(s.mu.queue) {
		s.cond.Wait()
	}
	if s.mu.stopped {
		s.mu.Unlock()
		return dst, false
	}
	n := min(max, len(s.mu.queue)-s.mu.head)
	batch := s.mu.queue[s.mu.head : s.mu.head+n]
	dst = append(dst, batch...)
	clear(batch)
	s.mu.head += n
	if s.mu.head == len(s.mu.queue) {
		s.mu.queue, s.mu.head = s.mu.queue[:0], 0
	}
	s.mu.Unlock()
	for _, g := range dst {
		for {
			st := g.sched.Load()
			if g.sched.CompareAndSwap(st, (st|schedProcessing)&^schedQueued) {
				break
			}
		}
	}
	return dst, true
}

// done releases g after processing and re-queues it if work arrived
// meanwhile.
func (s *scheduler) done(g *group) {
	for {
		st := g.sched.Load()
		if g.sched.CompareAndSwap(st, st&^schedProcessing) {
			if st&schedQueued != 0 {
				s.push(g)
			}
			return
		}
	}
}

// stop wakes every waiting worker and makes pop return false.
func (s *scheduler) stop() {
	s.mu.Lock()
	s.mu.stopped = true
	s.mu.Unlock()
	s.cond.Broadcast()
}
