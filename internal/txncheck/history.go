package txncheck

import (
	"fmt"
	"strings"
)

// OpKind is what one operation of a transaction did.
type OpKind int

const (
	// Append added Value at the end of Key's list.
	Append OpKind = iota + 1
	// Read observed Key's list as List.
	Read
)

// Op is one operation of a transaction, in the order the transaction
// performed it.
type Op struct {
	Kind OpKind
	Key  string
	// Value is the element appended (Append). It must be unique per key
	// across the whole history.
	Value int
	// List is the list read (Read); nil or empty for a key never written.
	List []int
}

// Outcome is what the client learned of a transaction's commit.
type Outcome int

const (
	// Committed: the commit succeeded.
	Committed Outcome = iota + 1
	// Aborted: the transaction certainly wrote nothing.
	Aborted
	// Unknown: the commit may or may not have taken effect.
	Unknown
)

func (o Outcome) String() string {
	switch o {
	case Committed:
		return "committed"
	case Aborted:
		return "aborted"
	case Unknown:
		return "unknown"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Txn is one transaction of a history.
type Txn struct {
	// ID names the transaction in reports; unique within a history.
	ID      int
	Ops     []Op
	Outcome Outcome
	// Start is the revision the transaction read at and Commit the one
	// its writes carry, as the store reported them (0: not known). Where
	// both ends of a dependency have them, Check checks the dependency
	// agrees (RevisionOrder).
	Start, Commit uint64
}

// AppendOp returns an Op appending value to key.
func AppendOp(key string, value int) Op { return Op{Kind: Append, Key: key, Value: value} }

// ReadOp returns an Op that read list from key.
func ReadOp(key string, list ...int) Op { return Op{Kind: Read, Key: key, List: list} }

func (t Txn) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "T%d[%s", t.ID, t.Outcome)
	if t.Start != 0 || t.Commit != 0 {
		fmt.Fprintf(&b, " start=%d commit=%d", t.Start, t.Commit)
	}
	b.WriteString("]")
	for _, op := range t.Ops {
		switch op.Kind {
		case Append:
			fmt.Fprintf(&b, " append(%s,%d)", op.Key, op.Value)
		case Read:
			fmt.Fprintf(&b, " read(%s)=%v", op.Key, op.List)
		}
	}
	return b.String()
}
