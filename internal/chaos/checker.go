package chaos

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// This file is the checker: a porcupine model of one key as a register
// with compare-and-swap, and the lost-write check. (internal/sim has a
// model of the same shape for its own records; this one is a separate
// copy on purpose, so the two packages evolve without touching each
// other.)

// regInput is an operation on one key's register.
type regInput struct {
	kind   OpKind
	value  string // put, CAS: the value written
	expect string // CAS: the value expected ("" absent)
}

// regOutput is what the operation returned.
type regOutput struct {
	out     string // get
	swapped bool   // CAS
	current string // CAS that did not swap
	unknown bool   // write of unknown outcome: nothing to match
}

// registerModel is the porcupine model of one key; the state is its value,
// "" when absent (the initial state). A write of unknown outcome is given
// a return time after every other operation, so it may take effect at any
// point after its call, or (in effect) never.
var registerModel = porcupine.Model{
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		st, in, out := state.(string), input.(regInput), output.(regOutput)
		switch in.kind {
		case OpGet:
			return out.out == st, st
		case OpPut:
			return true, in.value
		case OpDelete:
			return true, ""
		case OpCAS:
			switch {
			case out.unknown && st == in.expect:
				return true, in.value
			case out.unknown:
				return true, st
			case out.swapped:
				return st == in.expect, in.value
			default:
				return st != in.expect && st == out.current, st
			}
		}
		panic(fmt.Sprintf("chaos: register op of kind %v", in.kind))
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(regInput), output.(regOutput)
		switch {
		case in.kind == OpGet:
			return fmt.Sprintf("get -> %q", out.out)
		case in.kind == OpPut && out.unknown:
			return fmt.Sprintf("put(%q) -> ?", in.value)
		case in.kind == OpPut:
			return fmt.Sprintf("put(%q)", in.value)
		case in.kind == OpDelete && out.unknown:
			return "delete -> ?"
		case in.kind == OpDelete:
			return "delete"
		case out.unknown:
			return fmt.Sprintf("cas(%q -> %q) -> ?", in.expect, in.value)
		case out.swapped:
			return fmt.Sprintf("cas(%q -> %q) -> swapped", in.expect, in.value)
		}
		return fmt.Sprintf("cas(%q -> %q) -> found %q", in.expect, in.value, out.current)
	},
	DescribeState: func(state any) string { return fmt.Sprintf("%q", state.(string)) },
}

// porcupineOps converts one key's operations, leaving out those that
// surely had no effect (failed reads, writes the router reports as surely
// not applied) unless failedAsUnknown, in which case failed writes count
// as unknown too. Unknown writes return after everything else.
func porcupineOps(ops []Op, failedAsUnknown bool) []porcupine.Operation {
	var end int64
	for _, o := range ops {
		end = max(end, o.Return, o.Call)
	}
	end++
	// Values some operation saw: what gets returned, what failed CAS found,
	// what successful CAS replaced ("" for absent, which a delete writes).
	// A write of unknown outcome whose (unique) value nobody saw can be
	// left out: if it took effect, no
	// operation depended on it (a get or a failed CAS would have returned
	// its value, a CAS could only have swapped it by expecting it), so the
	// history is linearizable with it exactly when it is without it. Each
	// such write would otherwise stay pending to the end of the history,
	// and a few dozen of them (a long outage) make porcupine's search
	// explode.
	seen := map[string]bool{}
	for _, o := range ops {
		if o.Outcome != OK {
			continue
		}
		switch {
		case o.Kind == OpGet:
			seen[o.Out] = true
		case o.Kind == OpCAS && o.Swapped:
			seen[o.Expect] = true
		case o.Kind == OpCAS:
			seen[o.Current] = true
		}
	}
	var out []porcupine.Operation
	for _, o := range ops {
		outcome := o.Outcome
		if outcome == Failed && failedAsUnknown && o.isWrite() {
			outcome = Unknown
		}
		if outcome == Failed || (outcome == Unknown && o.isWrite() && !seen[o.Value]) {
			continue
		}
		in := regInput{kind: o.Kind, value: o.Value, expect: o.Expect}
		res := regOutput{out: o.Out, swapped: o.Swapped, current: o.Current}
		ret := o.Return
		if outcome == Unknown {
			if !o.isWrite() {
				continue // a read of unknown outcome has no effect
			}
			res = regOutput{unknown: true}
			ret = end
		}
		cid := o.Client
		if cid < 0 {
			cid = 0
		}
		out = append(out, porcupine.Operation{ClientId: cid, Input: in, Call: o.Call, Output: res, Return: ret})
	}
	return out
}

// Report is the outcome of checking one history.
type Report struct {
	// Keys is how many keys were checked.
	Keys int
	// Violations names each key whose history is not linearizable (or
	// could not be decided within the check timeout), with the
	// visualization file when one was written.
	Violations []string
	// Lost describes each acknowledged write the final state cannot
	// account for.
	Lost []string
	// Ops, Unknown and Failed count the operations by outcome.
	Ops, Unknown, Failed int
	// Watch describes each violation of the watch check (CheckRun,
	// CheckWatch); Events counts the events it checked.
	Watch  []string
	Events int
}

// CheckTimeout bounds porcupine per key; an undecided key counts as a
// violation (it proves nothing).
var CheckTimeout = 2 * time.Minute

// Check checks a history: each key's operations for linearizability, and
// every acknowledged write against the final reads (lost writes). When a
// key fails, its porcupine visualization is written to vizDir (if not
// empty) as <name>-<key>.html. Safe for concurrent use on distinct
// histories.
func Check(ops []Op, vizDir, name string) Report {
	var r Report
	byKey := map[string][]Op{}
	for _, o := range ops {
		byKey[o.Key] = append(byKey[o.Key], o)
		r.Ops++
		switch o.Outcome {
		case Unknown:
			r.Unknown++
		case Failed:
			r.Failed++
		}
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	r.Keys = len(keys)
	for _, k := range keys {
		if v := checkKey(byKey[k], vizDir, name, k); v != "" {
			r.Violations = append(r.Violations, v)
		}
		r.Lost = append(r.Lost, lostWrites(k, byKey[k])...)
	}
	return r
}

// checkKey checks one key and returns "" when it is linearizable, or a
// description of the violation.
func checkKey(ops []Op, vizDir, name, key string) string {
	res, info := porcupine.CheckOperationsVerbose(registerModel, porcupineOps(ops, false), CheckTimeout)
	if res == porcupine.Ok {
		return ""
	}
	var b strings.Builder
	if res == porcupine.Unknown {
		fmt.Fprintf(&b, "key %q: linearizability undecided after %v", key, CheckTimeout)
	} else {
		fmt.Fprintf(&b, "key %q: not linearizable", key)
		// Would it pass if the router's "surely not applied" failures
		// could have applied? Then the router's claim is what broke.
		if porcupine.CheckOperationsTimeout(registerModel, porcupineOps(ops, true), CheckTimeout) == porcupine.Ok {
			b.WriteString(" (linearizable if failed writes may have applied: a write reported as surely not applied did apply)")
		}
	}
	if vizDir != "" && res == porcupine.Illegal {
		path := filepath.Join(vizDir, fmt.Sprintf("%s-%s.html", name, safeName(key)))
		if err := os.MkdirAll(vizDir, 0o755); err == nil {
			if err := porcupine.VisualizePath(registerModel, info, path); err == nil {
				fmt.Fprintf(&b, "; visualization: %s", path)
			}
		}
	}
	b.WriteString("\n  history:")
	for _, o := range ops {
		b.WriteString("\n    " + o.String())
	}
	return b.String()
}

// lostWrites reports the acknowledged writes of one key that its final
// read cannot account for. The final value was written by some write x
// (values are unique; "" is the initial state, before every write, and
// what every delete writes). An acknowledged write w is lost when no
// write of the final value could have taken effect after w took effect,
// that is when every such x returned before w was called: x then precedes
// w, and the final value should reflect w or a later write. A key without
// a final read reports that instead.
func lostWrites(key string, ops []Op) []string {
	final, found := "", false
	var finalAt int64
	for _, o := range ops {
		if o.Final && o.Kind == OpGet && o.Outcome == OK {
			final, found, finalAt = o.Out, true, o.Call
		}
	}
	var lost []string
	if !found {
		for _, o := range ops {
			if o.acked() {
				return []string{fmt.Sprintf("key %q: no final read succeeded; its acknowledged writes are unaccounted for", key)}
			}
		}
		return nil
	}
	const never = int64(1) << 62
	for _, w := range ops {
		if !w.acked() || w.Value == final || w.Call > finalAt {
			continue
		}
		follows := false
		for _, x := range ops {
			writesFinal := x.isWrite() && x.Value == final
			if final == "" {
				writesFinal = x.Kind == OpDelete
			}
			if !writesFinal {
				continue
			}
			ret := x.Return
			if x.Outcome != OK {
				ret = never
			}
			if x.Outcome == OK && x.Kind == OpCAS && !x.Swapped {
				continue
			}
			if ret > w.Call {
				follows = true
				break
			}
		}
		if !follows {
			lost = append(lost, fmt.Sprintf("key %q: acknowledged %v; final value %q cannot follow it", key, w, final))
		}
	}
	return lost
}

// safeName makes a key usable in a file name.
func safeName(key string) string {
	var b strings.Builder
	for _, c := range []byte(key) {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02x", c)
		}
	}
	return b.String()
}
