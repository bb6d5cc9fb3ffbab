package multiraft

import (
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// splitVoteTicks is how long the lowest candidate of a split vote waits
// before it campaigns again: long enough for the other candidates' vote
// responses to land, far shorter than an election timeout.
const splitVoteTicks = 2

// sawSplitVote records a split vote: candidate g rejects the vote request of
// another candidate of the same term (each voted for itself).
//
// Raft ends a split vote only when a candidate's randomized election
// timeout expires, one to two election timeouts later. It happens when the
// survivors of a lost leader time out within a message's flight of each
// other; with two survivors of three neither can win, and writes to such
// a shard stop for up to two election timeouts (figures in bench/README.md,
// "Figures behind the engine's choices").
// So the candidate with the lowest replica ID among those it rejected
// campaigns again splitVoteTicks later; the others wait for their timers.
// A fresh pre-vote carries the next term, which the other candidates grant
// (a pre-vote for a higher term needs no free vote), and the vote that
// follows makes them followers. Starting an election is always safe in
// Raft, so this only changes who campaigns when.
func (r *round) sawSplitVote(g *group, m *raftpb.Message) {
	st := g.rn.BasicStatus()
	term := st.HardState.GetTerm()
	if st.RaftState != raft.StateCandidate || m.GetTerm() != term {
		return // not a split: the rejection came with a step down
	}
	if g.split.term != term {
		g.split = splitVote{term: term, ticks: splitVoteTicks}
	}
	if m.GetTo() < uint64(g.replica) {
		g.split.yield = true // a lower candidate campaigns again
	}
}

// breakSplit runs on every tick of g: once a split vote's ticks are up, a
// candidate that is still one in the split's term, and the lowest of it,
// campaigns again.
func (r *round) breakSplit(g *group) {
	if g.split.ticks == 0 {
		return
	}
	if g.split.ticks--; g.split.ticks > 0 {
		return
	}
	st := g.rn.BasicStatus()
	if !g.split.yield && st.RaftState == raft.StateCandidate && st.HardState.GetTerm() == g.split.term {
		r.e.metrics.SplitVotesBroken.Add(1)
		_ = g.rn.Campaign()
	}
	g.split = splitVote{}
}
