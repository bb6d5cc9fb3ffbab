package placement

import (
	"cmp"
	"errors"
	"slices"

	"github.com/flotilla-kv/flotilla/multiraft"
)

// ErrUnknownNode: the node never registered.
var ErrUnknownNode = errors.New("placement: unknown node")

func sortReplicas(rs []multiraft.Replica) {
	slices.SortFunc(rs, func(a, b multiraft.Replica) int { return cmp.Compare(a.ReplicaID, b.ReplicaID) })
}

func sortedIDs[V any](m map[multiraft.NodeID]V) []multiraft.NodeID {
	ids := make([]multiraft.NodeID, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}
