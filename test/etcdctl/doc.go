// Package etcdctl holds TestEtcdctl, which runs the real etcdctl (built
// from the Go module proxy by package target) through put, get, del, txn,
// watch, lease, member list and endpoint status and health against each
// target of COMPAT_TARGETS, checking every output exactly. Run it with
// `make test-etcd-compat`, or from this module:
//
//	COMPAT_TARGETS=etcd,flotilla go test -count=1 -v ./etcdctl
//
// The etcd target proves the checks right; the Flotilla target is a fleet
// of three shardnodes serving the etcd API on --etcd-listen.
package etcdctl
