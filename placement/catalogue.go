package placement

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"slices"
	"sync"

	"github.com/cockroachdb/pebble/v2"

	"github.com/flotilla-kv/flotilla/internal/keys"
	"github.com/flotilla-kv/flotilla/multiraft"
)

// The catalogue is placement's replicated state: the node directory, the
// ID counters and the cluster settings. It is one Raft group (CatalogueGroup)
// on placementd's own engine. Shards are deliberately not in it: their
// truth is in their own Raft groups, and placement's view of them is
// rebuilt from heartbeats.

// CatalogueGroup is the Raft group ID of the catalogue.
const CatalogueGroup multiraft.GroupID = 1

// Record kinds, the kind byte of keys.PlacementKey.
const (
	kindNode     byte = 'n'
	kindCounter  byte = 'c'
	kindSettings byte = 's'
)

// Counters of IDs handed out by the catalogue.
const (
	CounterNode    uint64 = 1
	CounterShard   uint64 = 2
	CounterReplica uint64 = 3
	// CounterTimestamp is not an ID counter: it holds the timestamp
	// oracle's persisted limit (see timestamps.go), only ever raised.
	CounterTimestamp uint64 = 4
)

// NodeRecord is a registered shardnode.
type NodeRecord struct {
	ID            multiraft.NodeID  `json:"id"`
	Address       string            `json:"address"`
	Zone          string            `json:"zone,omitempty"`
	Rack          string            `json:"rack,omitempty"`
	Extra         map[string]string `json:"extra,omitempty"`
	CapacityBytes uint64            `json:"capacity_bytes,omitempty"`
	Draining      bool              `json:"draining,omitempty"`
}

// Settings are cluster-wide facts decided once.
type Settings struct {
	Bootstrapped bool `json:"bootstrapped"`
}

// maxID returns the largest ID the catalogue hands out for counter. Replica
// IDs stop below the two etcd/raft reserves (multiraft.MaxReplicaID); node and
// shard IDs stop one below the largest uint64, so the next-ID counter
// never wraps around (an ID reported in use above the limit exhausts the
// counter instead).
func maxID(counter uint64) uint64 {
	if counter == CounterReplica {
		return uint64(multiraft.MaxReplicaID)
	}
	return math.MaxUint64 - 1
}

// ErrIDsExhausted: a counter has no ID left to hand out.
var ErrIDsExhausted = errors.New("placement: IDs exhausted")

// command is a catalogue write. Commands are JSON: they are rare (node
// registrations, ID allocations) and readable in a log dump.
type command struct {
	// register, alloc, drain, forget (remove node ID from the
	// catalogue), bootstrapped, or raise (ID is in use: the counter Kind
	// never hands out an ID at or below it).
	Op    string      `json:"op"`
	Node  *NodeRecord `json:"node,omitempty"`
	Kind  uint64      `json:"kind,omitempty"`
	Count uint64      `json:"count,omitempty"`
	ID    uint64      `json:"id,omitempty"`
	On    bool        `json:"on,omitempty"`
}

// catalogue is the state machine of the catalogue group. Its in-memory
// copy is read by the service from any goroutine, under mu.
type catalogue struct {
	mu       sync.RWMutex
	nodes    map[multiraft.NodeID]NodeRecord
	counters map[uint64]uint64
	settings Settings
}

var (
	_ multiraft.StateMachine = (*catalogue)(nil)

	errCorruptCatalogue = errors.New("placement: corrupt catalogue snapshot")
)

func newCatalogue(r pebble.Reader) (*catalogue, error) {
	c := &catalogue{nodes: map[multiraft.NodeID]NodeRecord{}, counters: map[uint64]uint64{}}
	lo, hi := keys.PlacementSpan()
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		if err := c.load(it.Key(), it.Value()); err != nil {
			return nil, err
		}
	}
	return c, it.Error()
}

// load decodes one stored record into memory.
func (c *catalogue) load(k, v []byte) error {
	if len(k) != 11 {
		return fmt.Errorf("placement: bad catalogue key %x", k)
	}
	id := binary.BigEndian.Uint64(k[3:])
	switch k[2] {
	case kindNode:
		var n NodeRecord
		if err := json.Unmarshal(v, &n); err != nil {
			return fmt.Errorf("placement: node %d: %w", id, err)
		}
		c.nodes[n.ID] = n
	case kindCounter:
		if len(v) != 8 {
			return fmt.Errorf("placement: counter %d: %d bytes", id, len(v))
		}
		c.counters[id] = binary.BigEndian.Uint64(v)
	case kindSettings:
		if err := json.Unmarshal(v, &c.settings); err != nil {
			return fmt.Errorf("placement: settings: %w", err)
		}
	default:
		return fmt.Errorf("placement: unknown catalogue record %x", k)
	}
	return nil
}

// Apply implements multiraft.StateMachine.
func (c *catalogue) Apply(ac *multiraft.ApplyContext, e multiraft.Entry) any {
	var cmd command
	if err := json.Unmarshal(e.Cmd, &cmd); err != nil {
		return fmt.Errorf("placement: bad catalogue command: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	b := ac.Batch
	switch cmd.Op {
	case "register":
		n := *cmd.Node
		if n.ID == 0 {
			id, err := c.allocLocked(b, CounterNode, 1)
			if err != nil {
				return err
			}
			n.ID = multiraft.NodeID(id)
		} else if old, ok := c.nodes[n.ID]; ok {
			n.Draining = old.Draining
		} else {
			// A node with a configured ID: never hand that ID out.
			c.raiseLocked(b, CounterNode, uint64(n.ID))
		}
		c.putNodeLocked(b, n)
		return uint64(n.ID)
	case "alloc":
		if cmd.Count == 0 {
			return fmt.Errorf("placement: allocating zero IDs")
		}
		if !validCounter(cmd.Kind) || cmd.Kind == CounterTimestamp {
			return fmt.Errorf("placement: unknown ID counter %d", cmd.Kind)
		}
		id, err := c.allocLocked(b, cmd.Kind, cmd.Count)
		if err != nil {
			return err
		}
		return id
	case "raise":
		if !validCounter(cmd.Kind) || cmd.ID == 0 {
			return fmt.Errorf("placement: raising ID counter %d past %d", cmd.Kind, cmd.ID)
		}
		c.raiseLocked(b, cmd.Kind, cmd.ID)
		return c.counters[cmd.Kind]
	case "drain":
		n, ok := c.nodes[multiraft.NodeID(cmd.ID)]
		if !ok {
			return fmt.Errorf("%w: node %d", ErrUnknownNode, cmd.ID)
		}
		n.Draining = cmd.On
		c.putNodeLocked(b, n)
		return uint64(n.ID)
	case "forget":
		if _, ok := c.nodes[multiraft.NodeID(cmd.ID)]; !ok {
			return fmt.Errorf("%w: node %d", ErrUnknownNode, cmd.ID)
		}
		// The node counter stays where it is: the ID is never handed out
		// again.
		delete(c.nodes, multiraft.NodeID(cmd.ID))
		_ = b.Delete(keys.PlacementKey(kindNode, cmd.ID), nil)
		return cmd.ID
	case "bootstrapped":
		c.settings.Bootstrapped = true
		v, _ := json.Marshal(c.settings)
		_ = b.Set(keys.PlacementKey(kindSettings, 0), v, nil)
		return nil
	}
	return fmt.Errorf("placement: unknown catalogue command %q", cmd.Op)
}

func validCounter(kind uint64) bool {
	return kind == CounterNode || kind == CounterShard || kind == CounterReplica || kind == CounterTimestamp
}

// allocLocked hands out count consecutive IDs of a counter and returns the
// first. IDs start at 1 and end at maxID(kind); ErrIDsExhausted when fewer
// than count are left.
func (c *catalogue) allocLocked(b *pebble.Batch, kind, count uint64) (uint64, error) {
	first, limit := max(c.counters[kind], 1), maxID(kind)
	if first > limit || count > limit-first+1 {
		return 0, fmt.Errorf("%w: counter %d is at %d, %d more asked for, the last is %d", ErrIDsExhausted, kind, first, count, limit)
	}
	c.setCounterLocked(b, kind, first+count)
	return first, nil
}

// raiseLocked records that ID inUse of a counter is in use: the counter
// moves past it if it is not already, saturating above maxID(kind).
func (c *catalogue) raiseLocked(b *pebble.Batch, kind, inUse uint64) {
	if next := min(inUse, maxID(kind)) + 1; next > c.counters[kind] {
		c.setCounterLocked(b, kind, next)
	}
}

func (c *catalogue) setCounterLocked(b *pebble.Batch, kind, next uint64) {
	c.counters[kind] = next
	_ = b.Set(keys.PlacementKey(kindCounter, kind), binary.BigEndian.AppendUint64(nil, next), nil)
}

func (c *catalogue) putNodeLocked(b *pebble.Batch, n NodeRecord) {
	c.nodes[n.ID] = n
	v, _ := json.Marshal(n)
	_ = b.Set(keys.PlacementKey(kindNode, uint64(n.ID)), v, nil)
}

// ApplyMembership implements multiraft.StateMachine; the catalogue keeps no
// copy of its group's membership.
func (c *catalogue) ApplyMembership(*multiraft.ApplyContext, uint64, multiraft.Membership) {}

// Snapshot implements multiraft.StateMachine: length-prefixed records, then
// a CRC-32C of everything before it.
func (c *catalogue) Snapshot(r pebble.Reader, w io.Writer) error {
	lo, hi := keys.PlacementSpan()
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	defer it.Close()
	crc := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	mw := io.MultiWriter(w, crc)
	var buf []byte
	for it.First(); it.Valid(); it.Next() {
		buf = binary.AppendUvarint(buf[:0], uint64(len(it.Key())))
		buf = append(buf, it.Key()...)
		buf = binary.AppendUvarint(buf, uint64(len(it.Value())))
		buf = append(buf, it.Value()...)
		if _, err := mw.Write(buf); err != nil {
			return err
		}
	}
	if err := it.Error(); err != nil {
		return err
	}
	_, err = w.Write(binary.BigEndian.AppendUint32(nil, crc.Sum32()))
	return err
}

// Restore implements multiraft.StateMachine.
func (c *catalogue) Restore(b *pebble.Batch, r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if len(data) < 4 {
		return errCorruptCatalogue
	}
	body := data[:len(data)-4]
	if crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli)) != binary.BigEndian.Uint32(data[len(data)-4:]) {
		return errCorruptCatalogue
	}
	type kv struct{ k, v []byte }
	var recs []kv
	for rd := bytes.NewReader(body); rd.Len() > 0; {
		var rec [2][]byte
		for i := range rec {
			n, err := binary.ReadUvarint(rd)
			if err != nil || n > uint64(rd.Len()) {
				return errCorruptCatalogue
			}
			rec[i] = make([]byte, n)
			_, _ = io.ReadFull(rd, rec[i])
		}
		recs = append(recs, kv{rec[0], rec[1]})
	}
	lo, hi := keys.PlacementSpan()
	_ = b.DeleteRange(lo, hi, nil)
	for _, r := range recs {
		if bytes.Compare(r.k, lo) < 0 || bytes.Compare(r.k, hi) >= 0 {
			return errCorruptCatalogue
		}
		_ = b.Set(r.k, r.v, nil)
	}
	return nil
}

// Destroy implements multiraft.StateMachine.
func (c *catalogue) Destroy(b *pebble.Batch) {
	lo, hi := keys.PlacementSpan()
	_ = b.DeleteRange(lo, hi, nil)
}

// Nodes returns the registered nodes, by ID.
func (c *catalogue) Nodes() []NodeRecord {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]NodeRecord, 0, len(c.nodes))
	for _, n := range c.nodes {
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b NodeRecord) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Node returns one node.
func (c *catalogue) Node(id multiraft.NodeID) (NodeRecord, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	n, ok := c.nodes[id]
	return n, ok
}

// Next returns the next ID counter would hand out (IDs below it are, or
// may be, in use).
func (c *catalogue) Next(counter uint64) uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return max(c.counters[counter], 1)
}

// Settings returns the cluster settings.
func (c *catalogue) Settings() Settings {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.settings
}
