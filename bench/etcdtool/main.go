// Command etcd is the etcd server of the bench suite's baseline fleet,
// built from a pinned go.etcd.io/etcd/server/v3 release. It lives in a
// module of its own so that the etcd server's dependencies never enter
// Flotilla's module graph; package bench builds it on demand into
// .cache/etcd/ (see bench/etcd.go).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
