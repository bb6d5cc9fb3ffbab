package sim

import (
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/flotilla-kv/flotilla/multiraft"
)

// Clock skew. Every node's engine is ticked by its own clock, whose rate
// a seed may set apart from the nominal one (a tick every stepsPerTick
// steps). Leases depend on the rates being close:
//
// A leader's lease starts at the tick t0 at which a ReadIndex round
// began and is valid while its tick counter is below t0+leaseTicks, so it
// ends less than leaseTicks of the leader's tick periods after the round
// began. A follower that confirmed the round heard the leader after it
// began, and with CheckQuorum ignores votes until electionTicks of its
// own ticks have passed since; the first may follow at once, so it votes
// no sooner than electionTicks-1 of its periods after the round began.
// The lease is safe while (electionTicks-1)·P_follower ≥
// leaseTicks·P_leader: with the engine's defaults (election 10, lease 8)
// no node's clock may run more than 9/8 as fast as another's, a relative
// drift of 12.5%.
//
// The simulator stays inside that bound: a skewed node's rate lies within
// ±maxSkewPermille of the nominal rate, so two clocks differ by at most
// 1050/950, about 10.5%. The planted bug bugSkewBeyondBound slows a
// cut-off node's clock to a tenth, far outside the bound, and the checks
// must then report stale lease reads.
const (
	// leaseTicks is the engines' Config.LeaseTicks (the engine's default,
	// ElectionTicks-2, written out so the checks can use it).
	leaseTicks = multiraft.DefaultElectionTicks - 2
	// maxSkewPermille bounds every node's clock drift from the nominal
	// rate, in 1/1000.
	maxSkewPermille = 50
	// nominalRate is a clock that runs at the nominal rate.
	nominalRate = 1000
	// skewBeyondBoundRate is the rate of a cut-off node's clock under
	// bugSkewBeyondBound.
	skewBeyondBoundRate = nominalRate / 10
)

// drawTickRates draws each node's clock rate: nominal everywhere for
// most seeds, otherwise each within ±maxSkewPermille.
func drawTickRates(rng *rand.Rand, nodes int, skewed bool) []int {
	rates := make([]int, nodes)
	for i := range rates {
		rates[i] = nominalRate
		if skewed {
			rates[i] += rng.IntN(2*maxSkewPermille+1) - maxSkewPermille
		}
	}
	return rates
}

func ratesString(rates []int) string {
	var b strings.Builder
	for i, r := range rates {
		if i > 0 {
			b.WriteByte('/')
		}
		fmt.Fprintf(&b, "%d", r)
	}
	return b.String()
}

// tickClocks advances every node's clock by one step and ticks the
// engines whose clocks reached a tick. A down node's clock runs on, so a
// nominal clock ticks at every stepsPerTick-th step whatever happened.
func (s *simulation) tickClocks() {
	for i, n := range s.nodes {
		rate := s.prof.tickRates[i]
		if s.cfg.bug == bugSkewBeyondBound && s.cut[i] != nil {
			rate = skewBeyondBoundRate
		}
		n.tickAcc += rate
		if n.tickAcc < stepsPerTick*nominalRate {
			continue
		}
		n.tickAcc -= stepsPerTick * nominalRate
		if n.up() {
			n.e.Tick()
			n.ticks++
		}
	}
}
