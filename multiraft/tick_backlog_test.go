package multiraft

import "testing"

// TestElectionWithTickBacklog: a node too busy to process its groups once
// per tick (thousands of groups waking at once on two cores) hands each
// group several ticks per round. Elections must still complete: a group
// whose every message hop costs more than an election timeout of folded
// ticks times out again before its votes arrive, forever.
func TestElectionWithTickBacklog(t *testing.T) {
	c := newCluster(t, 3, nil)
	c.createGroup(1, 1, 2, 3)
	const ticksPerRound = 2 * DefaultElectionTicks
	for step := range 200 {
		for _, e := range c.engines {
			for range ticksPerRound {
				e.Tick()
			}
		}
		// One round on every engine, then one hop of the network.
		for n := NodeID(1); n <= 3; n++ {
			c.engines[n].Process()
		}
		q := c.queue
		c.queue = nil
		for _, m := range q {
			c.engines[m.ToNode].Step([]Message{m})
		}
		for _, e := range c.engines {
			if g := e.lookup(1); g != nil && g.isLead {
				t.Logf("leader elected after %d rounds", step+1)
				return
			}
		}
	}
	g := c.engines[1].lookup(1)
	t.Fatalf("no leader after 200 rounds of %d ticks each (term %d)", ticksPerRound, g.term.Load())
}
