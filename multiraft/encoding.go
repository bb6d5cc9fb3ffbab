package multiraft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// The engine's own encodings, all little-endian or uvarint and versioned by
// a leading format byte where they are persisted.

const stateFormatV1 = 1

var errCorruptState = errors.New("multiraft: corrupt raft state")

// envelopeBytes is the size of the header the engine puts in front of every
// proposed command: the proposing engine's origin and the proposal's ID, so
// the proposer (and only it) can resolve its future when the entry applies.
const envelopeBytes = 16

func putEnvelope(dst []byte, origin, id uint64) {
	binary.LittleEndian.PutUint64(dst[0:], origin)
	binary.LittleEndian.PutUint64(dst[8:], id)
}

func readEnvelope(b []byte) (origin, id uint64, cmd []byte, ok bool) {
	if len(b) < envelopeBytes {
		return 0, 0, nil, false
	}
	return binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[8:]), b[envelopeBytes:], true
}

func encodeMembership(dst []byte, m Membership) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(m.Replicas)))
	for _, r := range m.Replicas {
		dst = binary.AppendUvarint(dst, uint64(r.ReplicaID))
		dst = binary.AppendUvarint(dst, uint64(r.NodeID))
		var l byte
		if r.Learner {
			l = 1
		}
		dst = append(dst, l)
	}
	var j byte
	if m.Joint {
		j = 1
	}
	return append(dst, j)
}

func decodeMembership(b []byte) (Membership, []byte, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return Membership{}, nil, errCorruptState
	}
	b = b[k:]
	m := Membership{Replicas: make([]Replica, 0, n)}
	for range n {
		id, k1 := binary.Uvarint(b)
		if k1 <= 0 {
			return Membership{}, nil, errCorruptState
		}
		node, k2 := binary.Uvarint(b[k1:])
		if k2 <= 0 || len(b) < k1+k2+1 {
			return Membership{}, nil, errCorruptState
		}
		m.Replicas = append(m.Replicas, Replica{ReplicaID: ReplicaID(id), NodeID: NodeID(node), Learner: b[k1+k2] == 1})
		b = b[k1+k2+1:]
	}
	if len(b) < 1 {
		return Membership{}, nil, errCorruptState
	}
	m.Joint = b[0] == 1
	return m, b[1:], nil
}

// appendSpan appends a state machine's span (see Spanner) to dst: a
// marker byte, then start and end, each uvarint-length-prefixed.
func appendSpan(dst, start, end []byte) []byte {
	dst = append(dst, spanMarker)
	dst = binary.AppendUvarint(dst, uint64(len(start)))
	dst = append(dst, start...)
	dst = binary.AppendUvarint(dst, uint64(len(end)))
	return append(dst, end...)
}

// spanMarker leads a span appended to a snapshot's Data.
const spanMarker = 's'

// decodeSpan decodes what appendSpan wrote; ok is false if b holds none.
// The results alias b.
func decodeSpan(b []byte) (start, end []byte, ok bool) {
	if len(b) < 1 || b[0] != spanMarker {
		return nil, nil, false
	}
	b = b[1:]
	var parts [2][]byte
	for i := range parts {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return nil, nil, false
		}
		parts[i], b = b[k:k+int(n)], b[k+int(n):]
	}
	return parts[0], parts[1], len(b) == 0
}

func encodeAppliedState(a *appliedState) []byte {
	cs, err := proto.Marshal(a.confState)
	if err != nil {
		panic(err)
	}
	b := []byte{stateFormatV1}
	b = binary.AppendUvarint(b, a.index)
	b = binary.AppendUvarint(b, a.term)
	b = binary.AppendUvarint(b, uint64(len(cs)))
	b = append(b, cs...)
	return encodeMembership(b, a.members)
}

func decodeAppliedState(b []byte, a *appliedState) error {
	if len(b) < 1 || b[0] != stateFormatV1 {
		return fmt.Errorf("%w: applied state format", errCorruptState)
	}
	b = b[1:]
	var vals [3]uint64
	for i := range vals {
		v, k := binary.Uvarint(b)
		if k <= 0 {
			return fmt.Errorf("%w: applied state", errCorruptState)
		}
		vals[i], b = v, b[k:]
	}
	if vals[2] > uint64(len(b)) {
		return fmt.Errorf("%w: applied state", errCorruptState)
	}
	a.index, a.term = vals[0], vals[1]
	a.confState = &raftpb.ConfState{}
	if err := proto.Unmarshal(b[:vals[2]], a.confState); err != nil {
		return err
	}
	m, _, err := decodeMembership(b[vals[2]:])
	a.members = m
	return err
}

func encodeTruncated(index, term uint64) []byte {
	b := []byte{stateFormatV1}
	b = binary.AppendUvarint(b, index)
	return binary.AppendUvarint(b, term)
}

func decodeTruncated(b []byte) (index, term uint64, err error) {
	if len(b) < 1 || b[0] != stateFormatV1 {
		return 0, 0, fmt.Errorf("%w: truncated state format", errCorruptState)
	}
	index, k1 := binary.Uvarint(b[1:])
	term, k2 := binary.Uvarint(b[1+max(k1, 0):])
	if k1 <= 0 || k2 <= 0 {
		return 0, 0, fmt.Errorf("%w: truncated state", errCorruptState)
	}
	return index, term, nil
}

// membershipFromConfState derives the membership after a conf change from
// the new ConfState and the node placement of every replica known before or
// added by the change.
func membershipFromConfState(cs *raftpb.ConfState, nodes map[ReplicaID]NodeID) Membership {
	var m Membership
	add := func(ids []uint64, learner bool) {
		for _, id := range ids {
			if _, ok := m.Lookup(ReplicaID(id)); ok {
				continue
			}
			m.Replicas = append(m.Replicas, Replica{ReplicaID: ReplicaID(id), NodeID: nodes[ReplicaID(id)], Learner: learner})
		}
	}
	add(cs.GetVoters(), false)
	add(cs.GetVotersOutgoing(), false)
	add(cs.GetLearners(), true)
	add(cs.GetLearnersNext(), true)
	slices.SortFunc(m.Replicas, func(a, b Replica) int { return cmpU64(uint64(a.ReplicaID), uint64(b.ReplicaID)) })
	m.Joint = len(cs.GetVotersOutgoing()) > 0
	return m
}

func confStateFromMembership(m Membership) *raftpb.ConfState {
	cs := &raftpb.ConfState{}
	for _, r := range m.Replicas {
		if r.Learner {
			cs.Learners = append(cs.Learners, uint64(r.ReplicaID))
		} else {
			cs.Voters = append(cs.Voters, uint64(r.ReplicaID))
		}
	}
	return cs
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
