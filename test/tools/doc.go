// Package tools pins the etcd command-line tools that Flotilla's etcd
// compatibility tests drive (go.etcd.io/etcd/etcdctl/v3, a `tool` of this
// module). It is a module of its own so that etcdctl's dependencies never
// enter Flotilla's module graph; package test/target builds etcdctl from
// it on demand into .cache/etcdctl (see target.Etcdctl).
package tools
