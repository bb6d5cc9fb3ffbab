// Package txncheck checks histories of list-append transactions for the
// anomalies of Adya's isolation levels, in the manner of Elle (Kingsbury
// and Alvaro, "Elle: Inferring Isolation Anomalies from Experimental
// Observations"). It owns the history model and the checker; it runs
// nothing against a store: the caller records a history and calls Check.
//
//	h := []txncheck.Txn{
//		{ID: 1, Outcome: txncheck.Committed, Ops: []txncheck.Op{txncheck.AppendOp("x", 1)}},
//		{ID: 2, Outcome: txncheck.Committed, Ops: []txncheck.Op{txncheck.ReadOp("x", 1)}},
//	}
//	res, err := txncheck.Check(h)           // err only for a malformed history
//	bad := res.Violations(txncheck.Serializable) // empty: nothing forbidden
//
// # The workload
//
// Each key holds a list of integers. A transaction is a sequence of ops:
// append(k, v) adds v at the end of k's list, read(k) returns the whole
// list. Every value appended to a key is unique in the history, so a read
// names the transactions whose appends it saw, and in what order. Each
// transaction ends committed (its commit succeeded), aborted (it certainly
// wrote nothing) or unknown (the client lost the answer).
//
// # What is checked
//
// Which transactions count. Committed ones; aborted ones never (their
// reads are not used either); an unknown one counts as committed if the
// read of any transaction that did not abort contains one of its appends,
// and is otherwise left out of the version order and the graph (it may
// not have happened); its reads are still checked as below.
//
// Reads. Every read of a transaction that did not abort is checked:
//   - garbage-read: it contains a value no transaction appended to the key;
//   - duplicate-element: it contains a value twice;
//   - internal: the transaction had appended to the key before the read,
//     and the list does not end with those appends, in order;
//   - G1a (aborted read): it contains a value an aborted transaction
//     appended;
//   - G1b (intermediate read): its last value was appended by another
//     transaction that appended more to the key afterwards.
//
// Version order. A key's order is its longest read among the counted
// transactions. Lists only grow, so every read must be a prefix of it; a
// read that is not is reported as incompatible-order (the key's order
// then rests on the longest read alone). Appends never read are not
// placed in any order and add no edges.
//
// Dependencies, between two distinct counted transactions, for each key:
//   - ww: T1 appended the value right before one T2 appended, in the
//     key's order;
//   - wr: T2 read a list whose last value T1 appended;
//   - rw: T1 read a list (a prefix of the order) of n values, and T2
//     appended the order's value n+1, the first T1 did not see.
//
// Cycles, each reported with its edges and transactions:
//   - G0: one cycle of ww edges per strongly connected component of the
//     ww graph;
//   - G1c: one cycle of ww and wr edges with at least one wr, per
//     component of the ww+wr graph that has one;
//   - G-single: one cycle with exactly one rw edge (the rest ww or wr),
//     per component of the whole graph that has one;
//   - G2: for a component of the whole graph with no G-single, one cycle
//     through an rw edge, which then has two or more rw edges.
//
// Revisions, where the store reports them (Txn.Start, the revision a
// transaction reads at; Txn.Commit, the one its writes carry; 0 when not
// known): a store that reads at a snapshot sees exactly the commits at or
// below its start, so each dependency whose two ends have the revisions
// must agree with them, else revision-order is reported:
//   - ww T1→T2: T1.Commit <= T2.Commit;
//   - wr T1→T2: T1.Commit <= T2.Start;
//   - rw T1→T2: T1.Start < T2.Commit.
//
// # Levels
//
// Allowed decides what a store may show: Serializable allows no
// anomaly; SnapshotIsolation allows G2 only. This is an approximation
// that errs towards passing: snapshot isolation also forbids cycles
// whose rw edges are not adjacent, which this checker reports as G2 and so lets
// pass at SnapshotIsolation (the revision checks above catch some of
// them when revisions are known). Every other kind, revision-order
// included, is forbidden at both levels.
//
// # Limits
//
// The checker can only find what the reads reveal: an anomaly among
// appends nobody read is invisible, and a history with few reads of each
// key proves little. It finds one cycle per component and kind, not
// every cycle.
package txncheck
