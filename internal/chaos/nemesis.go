package chaos

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
)

// Fault kinds. Each names one nemesis; a cycle runs one or two at once.
const (
	// faultKill: SIGKILL one or two random shardnodes (a minority of five),
	// restart them with their data at heal.
	faultKill = "kill"
	// faultKillLeader: SIGKILL the shardnode leading the most shards.
	faultKillLeader = "kill-leader"
	// faultPauseLeader: SIGSTOP (docker: freeze) the shardnode leading the
	// most shards; SIGCONT at heal.
	faultPauseLeader = "pause-leader"
	// faultKillPlacement: SIGKILL the placementd leader, restart it at heal.
	faultKillPlacement = "kill-placement-leader"
	// faultIsolateLeader (docker): cut the shardnode leading the most
	// shards off from every other node and placement replica.
	faultIsolateLeader = "isolate-leader"
	// faultSplit (docker): split the nodes 2|3 and the placement replicas
	// 1|2, at random.
	faultSplit = "partition-split"
)

// allFaults lists the fault kinds a cluster supports.
func allFaults(c cluster) []string {
	f := []string{faultKill, faultKillLeader, faultPauseLeader, faultKillPlacement}
	if c.CanPartition() {
		f = append(f, faultIsolateLeader, faultSplit)
	}
	return f
}

// fault is one planned nemesis action: inject starts it, heal ends it.
type fault struct {
	kind  string
	desc  string
	nodes []uint64 // shardnodes it affects
	// pin is the node pinned clients talk to during the cycle: the node
	// cut off or paused, when there is one.
	pin    uint64
	inject func()
	heal   func()
}

// plan is the faults of one cycle.
type plan []fault

func (p plan) String() string {
	var s []string
	for _, f := range p {
		s = append(s, f.desc)
	}
	return strings.Join(s, " + ")
}

// kinds names the plan by its fault kinds, sorted
// ("kill+kill-placement-leader").
func (p plan) kinds() string {
	var s []string
	for _, f := range p {
		s = append(s, f.kind)
	}
	slices.Sort(s)
	return strings.Join(s, "+")
}

// pin returns the node pinned clients should use, or 0.
func (p plan) pin() uint64 {
	for _, f := range p {
		if f.pin != 0 {
			return f.pin
		}
	}
	return 0
}

// nemesis plans faults from a seeded generator and the fleet's current
// leaders. Only the test goroutine uses it.
type nemesis struct {
	c       cluster
	in      *inspector
	rng     *rand.Rand
	enabled []string
}

// planCycle picks one fault kind, and with probability 0.4 a second one
// that keeps at most two shardnodes affected, and builds them.
func (n *nemesis) planCycle() plan {
	first := n.enabled[n.rng.IntN(len(n.enabled))]
	p := plan{n.build(first, nil)}
	if n.rng.Float64() < 0.4 {
		var second []string
		for _, k := range n.enabled {
			switch {
			case k == first:
			case k == faultKillPlacement:
				second = append(second, k)
			case first == faultSplit || k == faultSplit:
				// a split already takes two nodes away from the majority
			case k == faultKill || k == faultKillLeader || k == faultPauseLeader || k == faultIsolateLeader:
				if len(p[0].nodes) <= 1 {
					second = append(second, k)
				}
			}
		}
		if len(second) > 0 {
			p = append(p, n.build(second[n.rng.IntN(len(second))], p[0].nodes))
		}
	}
	return p
}

// build makes one fault of kind k that avoids the nodes in busy.
func (n *nemesis) build(k string, busy []uint64) fault {
	free := slices.DeleteFunc(slices.Clone(n.c.Nodes()), func(id uint64) bool { return slices.Contains(busy, id) })
	leader := func() uint64 {
		if id := n.in.topLeader(free); id != 0 {
			return id
		}
		return free[n.rng.IntN(len(free))]
	}
	switch k {
	case faultKill:
		count := 1 + n.rng.IntN(2)
		if len(busy) > 0 {
			count = 1
		}
		n.rng.Shuffle(len(free), func(i, j int) { free[i], free[j] = free[j], free[i] })
		victims := slices.Clone(free[:count])
		slices.Sort(victims)
		return fault{kind: k, desc: fmt.Sprintf("kill %s", names("n", victims)), nodes: victims,
			inject: func() {
				for _, id := range victims {
					n.c.KillNode(id)
				}
			},
			heal: func() {
				for _, id := range victims {
					n.c.RestartNode(id)
				}
			}}
	case faultKillLeader:
		id := leader()
		return fault{kind: k, desc: fmt.Sprintf("kill leader n%d", id), nodes: []uint64{id},
			inject: func() { n.c.KillNode(id) }, heal: func() { n.c.RestartNode(id) }}
	case faultPauseLeader:
		id := leader()
		return fault{kind: k, desc: fmt.Sprintf("pause leader n%d", id), nodes: []uint64{id}, pin: id,
			inject: func() { n.c.PauseNode(id) }, heal: func() { n.c.ResumeNode(id) }}
	case faultKillPlacement:
		ids := n.c.Placements()
		id := ids[n.rng.IntN(len(ids))]
		if i := n.in.placementLeader(); i >= 0 {
			id = ids[i]
		}
		return fault{kind: k, desc: fmt.Sprintf("kill placement leader p%d", id),
			inject: func() { n.c.KillPlacement(id) }, heal: func() { n.c.RestartPlacement(id) }}
	case faultIsolateLeader:
		id := leader()
		rest := slices.DeleteFunc(slices.Clone(n.c.Nodes()), func(x uint64) bool { return x == id })
		sides := []side{{Nodes: []uint64{id}}, {Nodes: rest, Placements: n.c.Placements()}}
		return fault{kind: k, desc: fmt.Sprintf("isolate leader %v|%v", sides[0], sides[1]), nodes: []uint64{id}, pin: id,
			inject: func() { n.c.Partition(sides) }, heal: func() { n.c.Heal() }}
	case faultSplit:
		nodes := slices.Clone(n.c.Nodes())
		n.rng.Shuffle(len(nodes), func(i, j int) { nodes[i], nodes[j] = nodes[j], nodes[i] })
		ps := slices.Clone(n.c.Placements())
		n.rng.Shuffle(len(ps), func(i, j int) { ps[i], ps[j] = ps[j], ps[i] })
		minority := side{Nodes: sorted(nodes[:2]), Placements: sorted(ps[:1])}
		majority := side{Nodes: sorted(nodes[2:]), Placements: sorted(ps[1:])}
		sides := []side{minority, majority}
		return fault{kind: k, desc: fmt.Sprintf("split %v|%v", minority, majority), nodes: minority.Nodes,
			pin:    minority.Nodes[n.rng.IntN(2)],
			inject: func() { n.c.Partition(sides) }, heal: func() { n.c.Heal() }}
	}
	panic(fmt.Sprintf("chaos: unknown fault kind %q", k))
}

func sorted(ids []uint64) []uint64 {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

func names(prefix string, ids []uint64) string {
	var s []string
	for _, id := range ids {
		s = append(s, fmt.Sprintf("%s%d", prefix, id))
	}
	return strings.Join(s, ",")
}
