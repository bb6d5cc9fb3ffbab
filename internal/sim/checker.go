package sim

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// The history is checked per key: every write of a batch becomes one
// operation on its key with the batch's call and return times. (This
// checks each key's linearizability; the atomicity of a batch across its
// keys is checked only through the replicas' agreement.)

// regInput is an operation on one key's register.
type regInput struct {
	kind   byte // 'r' read, 'w' write (put, or delete as ""), 'c' compare-and-swap
	key    string
	value  string
	expect string
}

// regOutput is what the operation returned.
type regOutput struct {
	value   string // read
	ok      bool   // CAS swapped
	cur     string // CAS: the value it found
	unknown bool   // ambiguous write: no output to match
}

// registerModel is a porcupine model of one key: its state is the
// value ("" when absent).
var registerModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		byKey := make(map[string][]porcupine.Operation)
		for _, op := range h {
			k := op.Input.(regInput).key
			byKey[k] = append(byKey[k], op)
		}
		var out [][]porcupine.Operation
		for _, k := range sortedKeys(byKey) {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		st, in, out := state.(string), input.(regInput), output.(regOutput)
		switch in.kind {
		case 'r':
			return out.value == st, st
		case 'w':
			return true, in.value
		case 'c':
			switch {
			case out.unknown && st == in.expect:
				return true, in.value
			case out.unknown:
				return true, st
			case out.ok:
				return st == in.expect, in.value
			default:
				return st != in.expect && st == out.cur, st
			}
		}
		panic(fmt.Sprintf("sim: unknown register op %q", in.kind))
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(regInput), output.(regOutput)
		switch {
		case in.kind == 'r':
			return fmt.Sprintf("get(%s) -> %q", in.key, out.value)
		case in.kind == 'w' && out.unknown:
			return fmt.Sprintf("put(%s, %q) -> ?", in.key, in.value)
		case in.kind == 'w':
			return fmt.Sprintf("put(%s, %q)", in.key, in.value)
		case out.unknown:
			return fmt.Sprintf("cas(%s, %q, %q) -> ?", in.key, in.expect, in.value)
		}
		return fmt.Sprintf("cas(%s, %q, %q) -> %v (found %q)", in.key, in.expect, in.value, out.ok, out.cur)
	},
}

// operations turns the history into porcupine operations, one per key
// touched.
func operations(h []record) []porcupine.Operation {
	var ops []porcupine.Operation
	for _, r := range h {
		cid := r.client + 1 // the final reads are client -1
		if r.kind == opGet {
			ops = append(ops, porcupine.Operation{ClientId: cid, Input: regInput{kind: 'r', key: r.key}, Call: r.call, Output: regOutput{value: r.out}, Return: r.ret})
			continue
		}
		for _, o := range r.ops {
			in := regInput{kind: 'w', key: o.key, value: o.value}
			out := regOutput{unknown: r.ambiguous}
			if o.op == cmdCAS {
				in.kind, in.expect = 'c', o.expect
				out.ok, out.cur = r.cas.ok, r.cas.cur
			}
			ops = append(ops, porcupine.Operation{ClientId: cid, Input: in, Call: r.call, Output: out, Return: r.ret})
		}
	}
	return ops
}

// checkTimeout bounds porcupine; a check that times out counts as a
// violation (an undecided history proves nothing).
const checkTimeout = 60 * time.Second

// check runs the end-of-run checks: linearizability, lost writes, stale
// reads.
func (s *simulation) check() {
	ops := operations(s.history)
	switch porcupine.CheckOperationsTimeout(registerModel, ops, checkTimeout) {
	case porcupine.Illegal:
		s.violation("history not linearizable: %s", s.describeIllegal())
	case porcupine.Unknown:
		s.violation("linearizability check timed out after %v", checkTimeout)
	}
	s.checkLost()
	s.checkStale()
	s.checkWatches()
	s.checkLeases()
	s.checkBank()
}

// describeIllegal names the keys whose history is not linearizable and
// lists their operations.
func (s *simulation) describeIllegal() string {
	var bad []string
	byKey := make(map[string][]record)
	for _, r := range s.history {
		for _, k := range r.keys() {
			byKey[k] = append(byKey[k], r)
		}
	}
	for _, k := range sortedKeys(byKey) {
		var h []porcupine.Operation
		for _, op := range operations(byKey[k]) {
			if op.Input.(regInput).key == k {
				h = append(h, op)
			}
		}
		if porcupine.CheckOperationsTimeout(registerModel, h, checkTimeout) != porcupine.Illegal {
			continue
		}
		rs := byKey[k]
		slices.SortFunc(rs, func(a, b record) int { return int(a.call - b.call) })
		lines := make([]string, len(rs))
		for i, r := range rs {
			lines[i] = "    " + r.String()
		}
		bad = append(bad, fmt.Sprintf("key %s:\n%s", k, strings.Join(lines, "\n")))
	}
	return strings.Join(bad, "\n")
}

// keys lists the keys r touches.
func (r record) keys() []string {
	if r.kind == opGet {
		return []string{r.key}
	}
	ks := make([]string, len(r.ops))
	for i, o := range r.ops {
		ks[i] = o.key
	}
	return ks
}

// write is one write to one key, for the lost-write check.
type write struct {
	rec   *record
	value string
	acked bool
}

// checkLost reports every acknowledged write that the final state cannot
// follow. The final value of a key was written by some write x (the
// values are unique; "" is written by deletes and is also the initial
// value). An acknowledged write w is lost when every write that could
// have produced the final value returned before w was called: then w
// must be ordered after it, and the final value should reflect w or
// something later.
func (s *simulation) checkLost() {
	byKey := make(map[string][]write)
	for i := range s.history {
		r := &s.history[i]
		if r.kind == opGet {
			continue
		}
		for _, o := range r.ops {
			switch {
			case o.op != cmdCAS:
				byKey[o.key] = append(byKey[o.key], write{rec: r, value: o.value, acked: !r.ambiguous})
			case r.ambiguous || r.cas.ok:
				byKey[o.key] = append(byKey[o.key], write{rec: r, value: o.value, acked: !r.ambiguous})
			}
		}
	}
	for _, k := range sortedKeys(byKey) {
		final, ok := s.final[k]
		if !ok {
			continue // no final read: already a violation
		}
		ws := byKey[k]
		for _, w := range ws {
			if !w.acked || w.value == final {
				continue
			}
			// The initial "" precedes every write, so only a write
			// (for "", a delete) may follow w.
			follows := false
			for _, x := range ws {
				if x.value == final && x.rec.ret > w.rec.call {
					follows = true
					break
				}
			}
			if !follows {
				s.lost = append(s.lost, fmt.Sprintf("key %s: acknowledged %v; final value %q was written before it", k, *w.rec, final))
			}
		}
	}
}

// checkStale checks that every stale read returned a value some write
// called before the read returned could have written ("" included).
func (s *simulation) checkStale() {
	written := make(map[string]int64) // key/value → earliest call
	for _, r := range s.history {
		for _, o := range r.ops {
			if o.op == cmdCAS && !r.ambiguous && !r.cas.ok {
				continue
			}
			kv := o.key + "\x00" + o.value
			if t, ok := written[kv]; !ok || r.call < t {
				written[kv] = r.call
			}
		}
	}
	for _, r := range s.stale {
		if r.out == "" {
			continue
		}
		if t, ok := written[r.key+"\x00"+r.out]; !ok || t > r.ret {
			s.violation("stale read returned a value never written: %v", r)
		}
	}
}
