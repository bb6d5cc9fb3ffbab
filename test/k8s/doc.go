// Package k8s holds TestStorageConformance, which runs the Kubernetes API
// server's storage conformance tests (k8s.io/apiserver/pkg/storage/testing,
// every test its etcd3 store runs against etcd) on that etcd3 store built
// over a clientv3 of each target of COMPAT_TARGETS. Run it with
// `make test-etcd-compat`, or from this module:
//
//	COMPAT_TARGETS=etcd,flotilla go test -count=1 -v ./k8s
//
// The harness (store_test.go) builds the store as the API server does,
// with the example API group's codec and a prefixing transformer; each
// test gets a store under a key prefix of its own on one server per
// target. The etcd target proves the harness: every test passes there.
package k8s
