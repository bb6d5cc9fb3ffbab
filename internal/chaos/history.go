package chaos

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"sync"
)

// OpKind is the kind of a recorded client operation.
type OpKind uint8

const (
	// OpGet reads a key (linearizable or lease read).
	OpGet OpKind = iota + 1
	// OpPut sets a key to a value.
	OpPut
	// OpCAS sets a key to Value if it holds Expect ("" means absent).
	OpCAS
	// OpDelete deletes a key (deleting an absent key succeeds and writes
	// nothing).
	OpDelete
)

func (k OpKind) String() string {
	switch k {
	case OpGet:
		return "get"
	case OpPut:
		return "put"
	case OpCAS:
		return "cas"
	case OpDelete:
		return "delete"
	}
	return fmt.Sprintf("OpKind(%d)", uint8(k))
}

// Outcome is what a client learned about an operation.
type Outcome uint8

const (
	// OK: the operation completed and its result is recorded.
	OK Outcome = iota + 1
	// Failed: the operation surely had no effect (a read that failed, or a
	// write the router reports as surely not applied). It is left out of
	// the linearizability check.
	Failed
	// Unknown: a write whose outcome was never learned (ErrAmbiguous, a
	// deadline): it may take effect at any time after its call, or never.
	// The checker treats it as pending until the end of the history.
	Unknown
)

func (o Outcome) String() string {
	switch o {
	case OK:
		return "ok"
	case Failed:
		return "failed"
	case Unknown:
		return "unknown"
	}
	return fmt.Sprintf("Outcome(%d)", uint8(o))
}

// Op is one recorded client operation. Times are nanoseconds on the
// history's monotonic clock. Values are never empty: "" stands for an
// absent key, in Expect (CAS when absent), Out and Current alike.
type Op struct {
	Client int
	Kind   OpKind
	Key    string
	// Value is the value a put or CAS writes (unique in a history).
	Value string
	// Expect is the value a CAS expects; "" means the key must be absent.
	Expect string
	// Lease marks a lease read (else a get is linearizable).
	Lease bool
	// Node, when non-zero, is the only shardnode the client could reach
	// (a pinned client).
	Node    uint64
	Call    int64
	Return  int64
	Outcome Outcome
	// Out is what a get returned ("" when absent).
	Out string
	// Swapped and Current are a CAS's result: whether it swapped, and
	// the value it found when it did not ("" when absent).
	Swapped bool
	Current string
	// Err is the error of a failed or unknown operation.
	Err string
	// Final marks the end-of-run reads after healing.
	Final bool
	// Revision is what the router reported with an acknowledged (OK)
	// operation, 0 otherwise: a put's or a delete's revision (a delete of
	// an absent key is ordered at it but writes nothing); the revision a
	// CAS was ordered at (its new value's when it swapped); the revision
	// a get read at (it saw every write at or below it, none above).
	// Histories written before revisions have none.
	Revision uint64
}

// isWrite reports whether o writes (a put, a CAS or a delete).
func (o *Op) isWrite() bool { return o.Kind == OpPut || o.Kind == OpCAS || o.Kind == OpDelete }

// acked reports whether o is an acknowledged write that changed its key
// (or, for a delete, was meant to): a put, a CAS that swapped, a delete.
func (o *Op) acked() bool {
	return o.Outcome == OK && (o.Kind == OpPut || o.Kind == OpDelete || (o.Kind == OpCAS && o.Swapped))
}

func (o Op) String() string {
	who := fmt.Sprintf("c%d", o.Client)
	if o.Node != 0 {
		who += fmt.Sprintf("@n%d", o.Node)
	}
	var s string
	switch o.Kind {
	case OpGet:
		mode := "lin"
		if o.Lease {
			mode = "lease"
		}
		s = fmt.Sprintf("get[%s](%q) -> %q", mode, o.Key, o.Out)
	case OpPut:
		s = fmt.Sprintf("put(%q, %q)", o.Key, o.Value)
	case OpCAS:
		s = fmt.Sprintf("cas(%q, %q -> %q)", o.Key, o.Expect, o.Value)
		if o.Outcome == OK {
			s += fmt.Sprintf(" -> swapped=%v current=%q", o.Swapped, o.Current)
		}
	case OpDelete:
		s = fmt.Sprintf("delete(%q)", o.Key)
	}
	if o.Revision != 0 {
		s += fmt.Sprintf(" @%d", o.Revision)
	}
	s = fmt.Sprintf("%s [%.3fs, %.3fs] %s %s", who, float64(o.Call)/1e9, float64(o.Return)/1e9, s, o.Outcome)
	if o.Err != "" {
		s += ": " + o.Err
	}
	return s
}

// History collects operations from concurrent clients. Safe for
// concurrent use; Ops returns a copy the caller owns.
type History struct {
	mu struct {
		sync.Mutex
		ops []Op
	}
}

// Add records one completed operation.
func (h *History) Add(o Op) {
	h.mu.Lock()
	h.mu.ops = append(h.mu.ops, o)
	h.mu.Unlock()
}

// Ops returns the recorded operations ordered by call time.
func (h *History) Ops() []Op {
	h.mu.Lock()
	ops := append([]Op(nil), h.mu.ops...)
	h.mu.Unlock()
	sort.SliceStable(ops, func(i, j int) bool { return ops[i].Call < ops[j].Call })
	return ops
}

// Run is what one cycle recorded: the clients' operations and the
// watchers' records. The caller owns both slices.
type Run struct {
	Ops   []Op
	Watch []WatchRecord
}

// The history file is JSON lines: an Op per line, as written before
// there were watchers, and a watcher's record as {"Watch": {...}}.
// Readers of the older form read the newer one's operations alike.

// watchLine is the line of a watch record.
type watchLine struct {
	Watch *WatchRecord
}

// WriteHistory writes ops as JSON lines, one Op per line, the form
// ReadHistory loads: a failing cycle's history saved this way can be
// checked again later (internal/chaos/recheck), with a longer check
// timeout or a changed checker. WriteRun also writes watch records.
func WriteHistory(w io.Writer, ops []Op) error {
	return WriteRun(w, Run{Ops: ops})
}

// WriteRun writes run's operations, then its watch records, as JSON
// lines (the form ReadRun loads).
func WriteRun(w io.Writer, run Run) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	for i := range run.Ops {
		if err := enc.Encode(&run.Ops[i]); err != nil {
			return err
		}
	}
	for i := range run.Watch {
		if err := enc.Encode(watchLine{Watch: &run.Watch[i]}); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// ReadHistory loads the operations of a history written by WriteHistory
// or WriteRun (watch records are read and dropped). A malformed line is
// an error naming its line number; nothing is skipped.
func ReadHistory(r io.Reader) ([]Op, error) {
	run, err := ReadRun(r)
	return run.Ops, err
}

// ReadRun loads a history written by WriteRun or WriteHistory: the
// operations ordered by call time, the watch records in the order
// written. A malformed line is an error naming its line number.
func ReadRun(r io.Reader) (Run, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 64<<20)
	var run Run
	for line := 1; sc.Scan(); line++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var wl watchLine
		if err := json.Unmarshal(sc.Bytes(), &wl); err != nil {
			return Run{}, fmt.Errorf("history line %d: %w", line, err)
		}
		if wl.Watch != nil {
			run.Watch = append(run.Watch, *wl.Watch)
			continue
		}
		var o Op
		if err := json.Unmarshal(sc.Bytes(), &o); err != nil {
			return Run{}, fmt.Errorf("history line %d: %w", line, err)
		}
		if o.Kind < OpGet || o.Kind > OpDelete || o.Outcome < OK || o.Outcome > Unknown {
			return Run{}, fmt.Errorf("history line %d: kind %d or outcome %d out of range", line, o.Kind, o.Outcome)
		}
		run.Ops = append(run.Ops, o)
	}
	if err := sc.Err(); err != nil {
		return Run{}, err
	}
	sort.SliceStable(run.Ops, func(i, j int) bool { return run.Ops[i].Call < run.Ops[j].Call })
	return run, nil
}
