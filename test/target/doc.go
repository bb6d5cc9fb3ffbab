// Package target starts the servers that Flotilla's etcd compatibility
// tests (test/etcdctl, test/k8s) run against, and builds the etcd tools
// they drive. It is test support: every call takes the test and fails it
// instead of returning an error, and everything it starts stops when the
// test ends.
//
// The same test body runs against every target, so that a check proven
// right against real etcd is then applied to Flotilla unchanged:
//
//	for _, name := range target.Names(t) { // COMPAT_TARGETS, default "etcd,flotilla"
//		t.Run(name, func(t *testing.T) {
//			tg := target.Start(t, name, target.Options{})
//			c := tg.Client(t) // clientv3 on tg.Endpoints
//			...
//		})
//	}
//
// The etcd target is a real etcd server, built once from the Go module
// proxy into .cache/etcd by the bench suite's bench.EnsureEtcd. The
// Flotilla target is a placementd and three shardnodes built from this
// checkout (internal/fleet, internal/launch), each serving the etcd API
// on its own port through --etcd-listen, over 4 shards at bootstrap that
// split further as the tests write.
//
// Etcdctl returns an etcdctl binary of the release pinned in
// test/tools/go.mod, built once into .cache/etcdctl.
package target
