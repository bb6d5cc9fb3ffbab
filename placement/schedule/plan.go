package schedule

import (
	"fmt"
)

// Plan is the result of one round. The caller owns it; it shares no memory
// with the Cluster it came from.
type Plan struct {
	// Operators are at most one per shard, in the checkers' priority order
	// and, within a checker, in a deterministic order (mostly by shard ID).
	Operators []Operator
	// Stats summarise the cluster's health as the round saw it.
	Stats Stats
}

// Stats count shards by what the round found. A shard may be counted in
// several fields.
type Stats struct {
	// Shards is len(Cluster.Shards).
	Shards int
	// InFlight counts shards with an operator in Cluster.InFlight.
	InFlight int
	// UnderReplicated counts shards with fewer than ReplicationFactor
	// live voters: on nodes that are up or draining (a node judged down
	// counts at once, long before DownAfter makes it dead).
	UnderReplicated int
	// Unavailable counts shards whose voters on nodes that are up (or
	// draining) are not a quorum: Raft cannot change their membership, so
	// the scheduler leaves them alone until enough nodes return.
	Unavailable int
	// Throttled counts shards that needed an operator (repair, drain, zone)
	// but every candidate node was at its limits; a later round retries.
	Throttled int
	// Unplaceable counts shards that needed a new replica that no node can
	// take (too few up nodes, every candidate full or already a holder), or
	// whose leader must move off a replica no caught-up voter can relieve.
	Unplaceable int
}

// Schedule runs one round of the checkers, in priority order (bootstrap,
// repair, drain, zone spread, split, replica balance, leader balance), over
// c and returns the operators to execute. It is a pure function of c and
// of the IDs ids returns: it reads no clock, starts no goroutine, does no
// I/O, and the same input yields the same Plan. It does not modify or
// retain c. ids may be called (see IDAllocator); it is not called when the
// round creates nothing.
//
// It returns an error wrapping ErrInvalidSettings or ErrInvalidCluster,
// listing the problems found, when c cannot be scheduled. When ids fails,
// the round stops at once and Schedule returns an error wrapping the
// allocator's, with no operator.
//
// Schedule is safe for concurrent use on distinct Clusters, and on the
// same Cluster as long as nobody modifies it meanwhile.
func Schedule(c *Cluster, ids IDAllocator) (Plan, error) {
	if err := c.Settings.Validate(); err != nil {
		return Plan{}, err
	}
	p, err := newPlanner(c, ids)
	if err != nil {
		return Plan{}, err
	}
	p.run()
	if p.err != nil {
		return Plan{}, fmt.Errorf("schedule: allocating an ID: %w", p.err)
	}
	return Plan{Operators: p.out, Stats: p.stats}, nil
}
