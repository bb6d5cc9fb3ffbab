package txncheck

import (
	"fmt"
	"slices"
)

// graph is the dependency graph restricted to the edges whose kinds
// intersect mask.
type graph struct {
	c    *checker
	mask EdgeKind
	succ map[int][]int
}

func (c *checker) graph(mask EdgeKind) *graph {
	g := &graph{c: c, mask: mask, succ: map[int][]int{}}
	for p, k := range c.edges {
		if k&mask != 0 {
			g.succ[p[0]] = append(g.succ[p[0]], p[1])
		}
	}
	for _, s := range g.succ {
		slices.Sort(s) // deterministic reports
	}
	return g
}

// sccs returns the strongly connected components of more than one
// transaction (Tarjan's algorithm), each sorted, in a stable order.
func (g *graph) sccs() [][]int {
	index, low := map[int]int{}, map[int]int{}
	onStack := map[int]bool{}
	var stack []int
	var out [][]int
	next := 0
	var visit func(v int)
	visit = func(v int) {
		index[v], low[v] = next, next
		next++
		stack = append(stack, v)
		onStack[v] = true
		for _, w := range g.succ[v] {
			if _, seen := index[w]; !seen {
				visit(w)
				low[v] = min(low[v], low[w])
			} else if onStack[w] {
				low[v] = min(low[v], index[w])
			}
		}
		if low[v] == index[v] {
			var comp []int
			for {
				w := stack[len(stack)-1]
				stack = stack[:len(stack)-1]
				onStack[w] = false
				comp = append(comp, w)
				if w == v {
					break
				}
			}
			if len(comp) > 1 {
				slices.Sort(comp)
				out = append(out, comp)
			}
		}
	}
	nodes := make([]int, 0, len(g.succ))
	for v := range g.succ {
		nodes = append(nodes, v)
	}
	slices.Sort(nodes)
	for _, v := range nodes {
		if _, seen := index[v]; !seen {
			visit(v)
		}
	}
	return out
}

// path returns a shortest path from one transaction to another over
// g's edges, as edges labelled with the kinds g allows, or nil if there
// is none. from == to is not a path.
func (g *graph) path(from, to int) []Edge {
	parent := map[int]int{from: from}
	queue := []int{from}
	for len(queue) > 0 {
		v := queue[0]
		queue = queue[1:]
		for _, w := range g.succ[v] {
			if _, seen := parent[w]; seen {
				continue
			}
			parent[w] = v
			if w == to {
				var rev []Edge
				for x := to; x != from; x = parent[x] {
					rev = append(rev, g.c.edge(parent[x], x, g.mask))
				}
				slices.Reverse(rev)
				return rev
			}
			queue = append(queue, w)
		}
	}
	return nil
}

// edge labels the edge from a to b with the one kind among mask it
// carries, preferring ww, then wr, then rw, and its key.
func (c *checker) edge(a, b int, mask EdgeKind) Edge {
	k := c.edges[[2]int{a, b}] & mask
	for _, bit := range []EdgeKind{WW, WR, RW} {
		if k&bit != 0 {
			return Edge{From: c.h[a].ID, To: c.h[b].ID, Kind: bit, Key: c.edgeKey[[2]int{a, b}][bit]}
		}
	}
	panic(fmt.Sprintf("txncheck: no edge %d->%d in mask %v", a, b, mask))
}

// findCycles reports, for each strongly connected component of each
// subgraph, one cycle of the most specific kind it holds: G0 over ww
// edges; G1c over ww and wr edges with at least one wr; G-single, a
// cycle with exactly one rw edge; G2, a cycle through an rw edge that
// has no G-single (so two or more rw edges).
func (c *checker) findCycles() {
	ww := c.graph(WW)
	for _, comp := range ww.sccs() {
		c.reportCycle(G0, comp[0], ww)
	}
	wwr := c.graph(WW | WR)
	for _, comp := range wwr.sccs() {
		if cyc := c.cycleThrough(comp, c.graph(WR), wwr); cyc != nil {
			c.reportCycleEdges(G1c, cyc)
		}
	}
	all, rw := c.graph(WW|WR|RW), c.graph(RW)
	for _, comp := range all.sccs() {
		if cyc := c.cycleThrough(comp, rw, wwr); cyc != nil {
			c.reportCycleEdges(GSingle, cyc)
			continue
		}
		if cyc := c.cycleThrough(comp, rw, all); cyc != nil {
			c.reportCycleEdges(G2, cyc)
		}
	}
}

// cycleThrough finds a cycle in comp made of one edge of first and a
// path back over rest's edges, trying first's edges in a stable order.
func (c *checker) cycleThrough(comp []int, first, rest *graph) []Edge {
	in := map[int]bool{}
	for _, v := range comp {
		in[v] = true
	}
	for _, a := range comp {
		for _, b := range first.succ[a] {
			if !in[b] {
				continue
			}
			if back := rest.path(b, a); back != nil {
				return append([]Edge{c.edge(a, b, first.mask)}, back...)
			}
		}
	}
	return nil
}

// reportCycle reports a cycle of g from v back to itself.
func (c *checker) reportCycle(kind AnomalyKind, v int, g *graph) {
	for _, w := range g.succ[v] {
		if back := g.path(w, v); back != nil {
			c.reportCycleEdges(kind, append([]Edge{c.edge(v, w, g.mask)}, back...))
			return
		}
	}
	panic(fmt.Sprintf("txncheck: T%d is in a component but on no cycle", c.h[v].ID))
}

func (c *checker) reportCycleEdges(kind AnomalyKind, cyc []Edge) {
	var txns []int
	for _, e := range cyc {
		txns = append(txns, c.byID[e.From])
	}
	c.report(kind, "", fmt.Sprintf("a cycle of %d transactions", len(cyc)), txns...)
	c.anomalies[len(c.anomalies)-1].Cycle = cyc
}
