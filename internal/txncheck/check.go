package txncheck

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrMalformed: Check was given a history it cannot judge (duplicate
// transaction IDs, a value appended twice to one key, an unknown op kind
// or outcome). It says nothing about the store.
var ErrMalformed = errors.New("txncheck: malformed history")

// AnomalyKind names a kind of anomaly (see the package doc for each).
type AnomalyKind string

// The kinds Check reports.
const (
	IncompatibleOrder AnomalyKind = "incompatible-order"
	DuplicateElement  AnomalyKind = "duplicate-element"
	GarbageRead       AnomalyKind = "garbage-read"
	Internal          AnomalyKind = "internal"
	RevisionOrder     AnomalyKind = "revision-order"
	G1a               AnomalyKind = "G1a"
	G1b               AnomalyKind = "G1b"
	G0                AnomalyKind = "G0"
	G1c               AnomalyKind = "G1c"
	GSingle           AnomalyKind = "G-single"
	G2                AnomalyKind = "G2"
)

// EdgeKind is the kind of a dependency between two transactions.
type EdgeKind uint8

// The dependency kinds; they are bits so a pair may carry several.
const (
	WW EdgeKind = 1 << iota // From's append immediately precedes To's in a key's order
	WR                      // To read a list whose last element From appended
	RW                      // From read a list missing the element To appended next
)

func (k EdgeKind) String() string {
	var parts []string
	for _, e := range []struct {
		bit  EdgeKind
		name string
	}{{WW, "ww"}, {WR, "wr"}, {RW, "rw"}} {
		if k&e.bit != 0 {
			parts = append(parts, e.name)
		}
	}
	return strings.Join(parts, "|")
}

// Edge is one dependency of a cycle, between transaction IDs.
type Edge struct {
	From, To int
	Kind     EdgeKind
	Key      string
}

// Anomaly is one anomaly found, with the transactions involved (copies:
// the caller owns them). Cycle is set for G0, G1c, G-single and G2.
type Anomaly struct {
	Kind   AnomalyKind
	Key    string
	Detail string
	Txns   []Txn
	Cycle  []Edge
}

func (a Anomaly) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s", a.Kind)
	if a.Key != "" {
		fmt.Fprintf(&b, " on %q", a.Key)
	}
	if a.Detail != "" {
		fmt.Fprintf(&b, ": %s", a.Detail)
	}
	if len(a.Cycle) > 0 {
		fmt.Fprintf(&b, "\n  cycle: T%d", a.Cycle[0].From)
		for _, e := range a.Cycle {
			fmt.Fprintf(&b, " -%s(%s)-> T%d", e.Kind, e.Key, e.To)
		}
	}
	for _, t := range a.Txns {
		fmt.Fprintf(&b, "\n  %s", t)
	}
	return b.String()
}

// Level is an isolation level a store claims.
type Level int

const (
	// SnapshotIsolation forbids every anomaly except G2 cycles (which
	// have two or more rw edges: write skew and its kin).
	SnapshotIsolation Level = iota + 1
	// Serializable forbids every anomaly.
	Serializable
)

func (l Level) String() string {
	switch l {
	case SnapshotIsolation:
		return "snapshot isolation"
	case Serializable:
		return "serializable"
	}
	return fmt.Sprintf("Level(%d)", int(l))
}

// Allowed reports whether a store at level may show anomalies of kind.
func Allowed(level Level, kind AnomalyKind) bool {
	return level == SnapshotIsolation && kind == G2
}

// Result is what Check found. Its methods may be called concurrently.
type Result struct {
	// Committed, Aborted and Unknown count the history's transactions by
	// outcome; UnknownSeen counts the unknown ones some read saw, which
	// were judged as committed.
	Committed, Aborted, Unknown, UnknownSeen int
	// Edges counts the dependencies found, by kind (a pair of
	// transactions linked in several ways counts once per kind).
	Edges map[EdgeKind]int
	// Anomalies is every anomaly found, allowed or not.
	Anomalies []Anomaly
}

// Violations returns the anomalies a store at level must not show.
func (r Result) Violations(level Level) []Anomaly {
	var out []Anomaly
	for _, a := range r.Anomalies {
		if !Allowed(level, a.Kind) {
			out = append(out, a)
		}
	}
	return out
}

// writer locates an append: the transaction (index into the history)
// and whether it was that transaction's last append to the key.
type writer struct {
	txn  int
	last bool
}

// checker holds one Check's state.
type checker struct {
	h         []Txn
	byID      map[int]int               // transaction ID → index into h
	writers   map[string]map[int]writer // key → value → its append
	included  []bool                    // committed, or unknown and seen
	anomalies []Anomaly
	edges     map[[2]int]EdgeKind
	edgeKey   map[[2]int]map[EdgeKind]string
}

// Check judges a list-append history: it infers each key's order from
// the reads, checks every read against it, builds the dependency graph
// between the transactions that committed and looks for cycles in it.
// It does not modify h.
func Check(h []Txn) (Result, error) {
	c := &checker{h: h, byID: map[int]int{}, writers: map[string]map[int]writer{}, included: make([]bool, len(h)),
		edges: map[[2]int]EdgeKind{}, edgeKey: map[[2]int]map[EdgeKind]string{}}
	var res Result
	if err := c.index(&res); err != nil {
		return Result{}, err
	}
	c.checkReads(&res)
	c.buildGraph()
	c.checkRevisions()
	c.findCycles()
	res.Edges = map[EdgeKind]int{}
	for _, k := range c.edges {
		for _, bit := range []EdgeKind{WW, WR, RW} {
			if k&bit != 0 {
				res.Edges[bit]++
			}
		}
	}
	res.Anomalies = c.anomalies
	return res, nil
}

// index validates h and records who appended what.
func (c *checker) index(res *Result) error {
	ids := map[int]bool{}
	for i, t := range c.h {
		if ids[t.ID] {
			return fmt.Errorf("%w: transaction ID %d used twice", ErrMalformed, t.ID)
		}
		ids[t.ID] = true
		c.byID[t.ID] = i
		switch t.Outcome {
		case Committed:
			res.Committed++
			c.included[i] = true
		case Aborted:
			res.Aborted++
		case Unknown:
			res.Unknown++
		default:
			return fmt.Errorf("%w: T%d has outcome %d", ErrMalformed, t.ID, t.Outcome)
		}
		lastAppend := map[string]int{}
		for _, op := range t.Ops {
			if op.Kind == Append {
				lastAppend[op.Key] = op.Value
			}
		}
		for _, op := range t.Ops {
			switch op.Kind {
			case Append:
				ws := c.writers[op.Key]
				if ws == nil {
					ws = map[int]writer{}
					c.writers[op.Key] = ws
				}
				if _, dup := ws[op.Value]; dup {
					return fmt.Errorf("%w: %d appended to %q twice", ErrMalformed, op.Value, op.Key)
				}
				ws[op.Value] = writer{txn: i, last: lastAppend[op.Key] == op.Value}
			case Read:
			default:
				return fmt.Errorf("%w: T%d has an op of kind %d", ErrMalformed, t.ID, op.Kind)
			}
		}
	}
	return nil
}

func (c *checker) report(kind AnomalyKind, key, detail string, txns ...int) {
	a := Anomaly{Kind: kind, Key: key, Detail: detail}
	for _, i := range txns {
		a.Txns = append(a.Txns, c.h[i])
	}
	c.anomalies = append(c.anomalies, a)
}

// checkReads checks every read of a transaction that did not abort on
// its own (G1a, G1b, garbage, duplicates, its own appends), and promotes
// the unknown transactions some other transaction's read saw.
func (c *checker) checkReads(res *Result) {
	for i, t := range c.h {
		if t.Outcome == Aborted {
			continue
		}
		own := map[string][]int{} // this transaction's appends so far
		for _, op := range t.Ops {
			if op.Kind == Append {
				own[op.Key] = append(own[op.Key], op.Value)
				continue
			}
			seen := map[int]bool{}
			for _, v := range op.List {
				if seen[v] {
					c.report(DuplicateElement, op.Key, fmt.Sprintf("%d twice in %v", v, op.List), i)
				}
				seen[v] = true
				w, ok := c.writers[op.Key][v]
				switch {
				case !ok:
					c.report(GarbageRead, op.Key, fmt.Sprintf("read %d, which no transaction appended", v), i)
				case w.txn == i:
				case c.h[w.txn].Outcome == Aborted:
					c.report(G1a, op.Key, fmt.Sprintf("T%d read %d, appended by aborted T%d", t.ID, v, c.h[w.txn].ID), w.txn, i)
				case c.h[w.txn].Outcome == Unknown && !c.included[w.txn]:
					c.included[w.txn] = true
					res.UnknownSeen++
				}
			}
			if mine := own[op.Key]; len(mine) > 0 && !endsWith(op.List, mine) {
				c.report(Internal, op.Key, fmt.Sprintf("T%d appended %v but read %v", t.ID, mine, op.List), i)
			}
			if n := len(op.List); n > 0 {
				if w, ok := c.writers[op.Key][op.List[n-1]]; ok && w.txn != i && !w.last {
					c.report(G1b, op.Key, fmt.Sprintf("T%d read %v, ending in an intermediate append of T%d", t.ID, op.List, c.h[w.txn].ID), w.txn, i)
				}
			}
		}
	}
}

func endsWith(list, tail []int) bool {
	return len(list) >= len(tail) && slices.Equal(list[len(list)-len(tail):], tail)
}

func isPrefix(p, of []int) bool { return len(p) <= len(of) && slices.Equal(p, of[:len(p)]) }

// observation is one read of an included transaction.
type observation struct {
	txn  int
	list []int
}

// buildGraph infers each key's order (its longest read), reports reads
// that are not prefixes of it, and adds the ww, wr and rw edges between
// included transactions.
func (c *checker) buildGraph() {
	reads := map[string][]observation{}
	for i, t := range c.h {
		if !c.included[i] {
			continue
		}
		for _, op := range t.Ops {
			if op.Kind == Read {
				reads[op.Key] = append(reads[op.Key], observation{txn: i, list: op.List})
			}
		}
	}
	keys := make([]string, 0, len(reads))
	for k := range reads {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		rs := reads[k]
		longest := rs[0]
		for _, r := range rs[1:] {
			if len(r.list) > len(longest.list) {
				longest = r
			}
		}
		order := longest.list
		for _, r := range rs {
			if !isPrefix(r.list, order) {
				c.report(IncompatibleOrder, k, fmt.Sprintf("%v is not a prefix of %v", r.list, order), r.txn, longest.txn)
			}
		}
		ws := c.writers[k]
		writerOf := func(v int) (int, bool) {
			w, ok := ws[v]
			if !ok || !c.included[w.txn] {
				return 0, false
			}
			return w.txn, true
		}
		for j := 1; j < len(order); j++ {
			a, okA := writerOf(order[j-1])
			b, okB := writerOf(order[j])
			if okA && okB {
				c.addEdge(a, b, WW, k)
			}
		}
		for _, r := range rs {
			if n := len(r.list); n > 0 {
				if w, ok := writerOf(r.list[n-1]); ok {
					c.addEdge(w, r.txn, WR, k)
				}
			}
			if n := len(r.list); n < len(order) && isPrefix(r.list, order) {
				if w, ok := writerOf(order[n]); ok {
					c.addEdge(r.txn, w, RW, k)
				}
			}
		}
	}
}

func (c *checker) addEdge(from, to int, kind EdgeKind, key string) {
	if from == to {
		return
	}
	p := [2]int{from, to}
	c.edges[p] |= kind
	if c.edgeKey[p] == nil {
		c.edgeKey[p] = map[EdgeKind]string{}
	}
	if _, ok := c.edgeKey[p][kind]; !ok {
		c.edgeKey[p][kind] = key
	}
}

// checkRevisions checks each dependency against the revisions, where
// both transactions have them: a transaction reads at its start and
// sees exactly the commits at or below it, and commits at its commit
// revision. So wr T1→T2 needs T1.Commit <= T2.Start, rw T1→T2 needs
// T1.Start < T2.Commit, and ww T1→T2 needs T1.Commit <= T2.Commit.
func (c *checker) checkRevisions() {
	pairs := make([][2]int, 0, len(c.edges))
	for p := range c.edges {
		pairs = append(pairs, p)
	}
	slices.SortFunc(pairs, func(a, b [2]int) int {
		if a[0] != b[0] {
			return a[0] - b[0]
		}
		return a[1] - b[1]
	})
	for _, p := range pairs {
		a, b := c.h[p[0]], c.h[p[1]]
		k := c.edges[p]
		var broken []string
		if k&WW != 0 && a.Commit != 0 && b.Commit != 0 && a.Commit > b.Commit {
			broken = append(broken, fmt.Sprintf("ww on %q but T%d commit %d > T%d commit %d", c.edgeKey[p][WW], a.ID, a.Commit, b.ID, b.Commit))
		}
		if k&WR != 0 && a.Commit != 0 && b.Start != 0 && a.Commit > b.Start {
			broken = append(broken, fmt.Sprintf("wr on %q but T%d commit %d > T%d start %d", c.edgeKey[p][WR], a.ID, a.Commit, b.ID, b.Start))
		}
		if k&RW != 0 && a.Start != 0 && b.Commit != 0 && b.Commit <= a.Start {
			broken = append(broken, fmt.Sprintf("rw on %q but T%d commit %d <= T%d start %d", c.edgeKey[p][RW], b.ID, b.Commit, a.ID, a.Start))
		}
		if len(broken) > 0 {
			c.report(RevisionOrder, "", strings.Join(broken, "; "), p[0], p[1])
		}
	}
}
