// Package etcdapi serves the etcd v3 gRPC API (the etcdserverpb services,
// same package and service names, so unmodified etcd clients connect) over
// a router.Client, so that etcdctl, clientv3 and the Kubernetes API
// server's etcd3 storage work against a Flotilla fleet.
package etcdapi
