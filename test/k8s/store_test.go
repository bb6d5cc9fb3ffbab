package k8s

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/kubernetes"
	"google.golang.org/grpc/grpclog"
	"k8s.io/apimachinery/pkg/api/apitesting"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apiserver/pkg/apis/example"
	examplev1 "k8s.io/apiserver/pkg/apis/example/v1"
	"k8s.io/apiserver/pkg/features"
	"k8s.io/apiserver/pkg/storage"
	"k8s.io/apiserver/pkg/storage/etcd3"
	storagetesting "k8s.io/apiserver/pkg/storage/testing"
	"k8s.io/apiserver/pkg/storage/value"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/utils/clock"

	"github.com/flotilla-kv/flotilla/test/target"
)

// The example API group's types (example.Pod and its list), in internal
// and v1 form, as the storage tests create and read them.
var (
	scheme = runtime.NewScheme()
	codecs = serializer.NewCodecFactory(scheme)
)

func init() {
	metav1.AddToGroupVersion(scheme, metav1.SchemeGroupVersion)
	utilruntime.Must(example.AddToScheme(scheme))
	utilruntime.Must(examplev1.AddToScheme(scheme))
	// gRPC's informational chatter would drown the tests' output.
	grpclog.SetLoggerV2(grpclog.NewLoggerV2(io.Discard, io.Discard, os.Stderr))
}

// valuePrefix is what the tests' transformer puts before every stored
// value (storagetesting.PrefixTransformer), so that a value that did not
// go through the transformer is noticed.
const valuePrefix = "k8s-compat:"

// storePrefix begins the key prefix of every store's data.
const storePrefix = "/k8s-"

// storeCount numbers the stores of a test process; each store keeps its
// data under a key prefix of its own, so that the tests can share one
// server.
var storeCount atomic.Int64

// etcd3Store is what the tests use of the store etcd3.New returns,
// beyond storage.Interface.
type etcd3Store interface {
	storage.Interface
	etcd3.Compactor
	EnableResourceSizeEstimation(storage.KeysFunc) error
	Close()
}

// testStore is one test's storage: Kubernetes's etcd3 store on a clientv3
// of the target, under a key prefix of its own, with the hooks some
// tests use to swap the store's value transformer. Its methods are safe
// for concurrent use.
type testStore struct {
	etcd3Store

	// client is the store's client, its KV and Kubernetes interfaces
	// wrapped in the tests' call recorders.
	client *kubernetes.Client
	// prefix is the key prefix of the store's data, without a trailing
	// slash: a key K of the tests is prefix+K in the target.
	prefix      string
	codec       runtime.Codec
	transformer *swapTransformer
}

// newTestStore builds a store the way the API server does (codec of the
// example group, identity-like transformer, resource "pods" under /pods/)
// on a new client of tg. Everything is closed when t ends.
func newTestStore(t *testing.T, tg *target.Target) *testStore {
	t.Helper()
	cfg := tg.ClientConfig()
	client, err := kubernetes.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	client.KV = storagetesting.NewKVRecorder(client.KV)
	client.Kubernetes = storagetesting.NewKubernetesRecorder(client.Kubernetes)

	s := &testStore{
		client:      client,
		prefix:      fmt.Sprintf("%s%d", storePrefix, storeCount.Add(1)),
		codec:       apitesting.TestCodec(codecs, examplev1.SchemeGroupVersion),
		transformer: newSwapTransformer(storagetesting.NewPrefixTransformer([]byte(valuePrefix), false)),
	}
	compactor := etcd3.NewCompactor(client.Client, 0 /* no periodic compaction */, clock.RealClock{}, nil)
	t.Cleanup(compactor.Stop)
	leases := etcd3.NewDefaultLeaseManagerConfig()
	leases.ReuseDurationSeconds = 1 // a lease is shared by the objects of one second, not one minute
	versioner := storage.APIObjectVersioner{}
	st, err := etcd3.New(client, compactor, s.codec,
		func() runtime.Object { return &example.Pod{} },
		func() runtime.Object { return &example.PodList{} },
		s.prefix, "/pods/", schema.GroupResource{Resource: "pods"},
		s.transformer, leases, etcd3.NewDefaultDecoder(s.codec, versioner), versioner)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	s.etcd3Store = st
	return s
}

// UpdatePrefixTransformer implements storagetesting.InterfaceWithPrefixTransformer:
// the store uses modifier's transformer, made from a copy of the base
// one, until the returned function is called.
func (s *testStore) UpdatePrefixTransformer(modifier storagetesting.PrefixTransformerModifier) func() {
	base := *s.transformer.base
	return s.transformer.use(modifier(&base))
}

// CorruptTransformer implements storagetesting.InterfaceWithCorruptTransformer:
// every read of a stored value fails until the returned function is
// called.
func (s *testStore) CorruptTransformer() func() {
	// The API server wraps its transformer so when it allows the unsafe
	// deletion of corrupt objects (AllowUnsafeMalformedObjectDeletion).
	return s.transformer.use(etcd3.WithCorruptObjErrorHandlingTransformer(corruptTransformer{s.transformer.base}))
}

// keyValidation checks what the store wrote under a test's key: a value
// with the transformer's prefix that decodes to a pod without resource
// version or self link (the store adds those when reading).
func (s *testStore) keyValidation() storagetesting.KeyValidation {
	return func(ctx context.Context, t *testing.T, key string) {
		resp, err := s.client.KV.Get(ctx, s.prefix+key)
		if err != nil {
			t.Fatalf("get %s: %v", s.prefix+key, err)
		}
		if len(resp.Kvs) == 0 {
			t.Fatalf("nothing stored under %s", s.prefix+key)
		}
		v := resp.Kvs[0].Value
		if len(v) < len(valuePrefix) || string(v[:len(valuePrefix)]) != valuePrefix {
			t.Fatalf("value of %s does not start with %q: %q", s.prefix+key, valuePrefix, v)
		}
		obj, err := runtime.Decode(s.codec, v[len(valuePrefix):])
		if err != nil {
			t.Fatalf("decoding the value of %s: %v\n%q", s.prefix+key, err, v)
		}
		pod := obj.(*example.Pod)
		if pod.ResourceVersion != "" || pod.SelfLink != "" {
			t.Errorf("stored pod %s has resource version %q and self link %q, want both empty", s.prefix+key, pod.ResourceVersion, pod.SelfLink)
		}
	}
}

// increaseRV writes a key outside every store's prefix and returns the
// revision of the write.
func (s *testStore) increaseRV() storagetesting.IncreaseRVFunc {
	return func(ctx context.Context, t *testing.T) int64 {
		resp, err := s.client.KV.Put(ctx, "/k8s-increase-rv", "x")
		if err != nil {
			t.Fatalf("put /k8s-increase-rv: %v", err)
		}
		return resp.Header.Revision
	}
}

// compaction compacts the target up to a resource version, through the
// store package's own Compact (a compare-and-swap on its compaction key,
// then the etcd Compact call), and waits until the store has seen it
// when the store follows compactions (ListFromCacheSnapshot).
func (s *testStore) compaction() storagetesting.Compaction {
	return func(ctx context.Context, t *testing.T, resourceVersion string) {
		rv, err := storage.APIObjectVersioner{}.ParseResourceVersion(resourceVersion)
		if err != nil {
			t.Fatal(err)
		}
		// Compact's compare-and-swap needs the compaction key's version,
		// which an attempt that fails returns; success is the compaction
		// at rv reported back.
		var version int64
		for attempt := 0; ; attempt++ {
			v, _, compacted, err := etcd3.Compact(ctx, s.client.Client, version, int64(rv))
			if err != nil {
				t.Fatalf("compacting at %d: %v", rv, err)
			}
			if compacted == int64(rv) {
				break
			}
			if attempt == 2 {
				t.Fatalf("compacting at %d: the compaction key still changes under us (version %d, revision %d)", rv, v, compacted)
			}
			version = v
		}
		if !utilfeature.DefaultFeatureGate.Enabled(features.ListFromCacheSnapshot) {
			return
		}
		deadline := time.Now().Add(30 * time.Second)
		for s.CompactRevision() != int64(rv) {
			if time.Now().After(deadline) {
				t.Fatalf("the store's compact revision is %d 30s after compacting at %d", s.CompactRevision(), rv)
			}
			select {
			case <-ctx.Done():
				t.Fatal(ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

// callsValidation checks how many values a paginated list transformed
// and how many Range calls it made: with pages growing twofold from the
// requested limit up to the store's cap of 10000.
func (s *testStore) callsValidation() storagetesting.CallsValidation {
	const maxPage = 10000 // the etcd3 store's page cap
	return func(t *testing.T, pageSize, processed uint64) {
		if reads := s.transformer.base.GetReadsAndReset(); reads != processed {
			t.Errorf("the list transformed %d values, want %d", reads, processed)
		}
		calls := uint64(1)
		if pageSize != 0 {
			page := pageSize
			for got := uint64(1); got < processed; calls++ {
				page = min(2*page, maxPage)
				got += page
			}
		}
		if reads := s.client.KV.(*storagetesting.KVRecorder).GetReadsAndReset(); reads != calls {
			t.Fatalf("the list made %d reads, want %d", reads, calls)
		}
	}
}

// keys lists the keys of the store's pods, as the API server's object
// size estimation does.
func (s *testStore) keys(ctx context.Context) ([]string, error) {
	resp, err := s.client.KV.Get(ctx, s.prefix+"/pods/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, err
	}
	keys := make([]string, len(resp.Kvs))
	for i, kv := range resp.Kvs {
		keys[i] = string(kv.Key)
	}
	return keys, nil
}

// swapTransformer is a value transformer that delegates to another one,
// which tests may swap while the store runs.
type swapTransformer struct {
	// base is the transformer of the store's construction.
	base *storagetesting.PrefixTransformer

	mu struct {
		sync.RWMutex
		cur value.Transformer
	}
}

func newSwapTransformer(base *storagetesting.PrefixTransformer) *swapTransformer {
	s := &swapTransformer{base: base}
	s.mu.cur = base
	return s
}

// use makes t the current transformer and returns a function that puts
// back the one before.
func (s *swapTransformer) use(t value.Transformer) func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.mu.cur
	s.mu.cur = t
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.mu.cur = prev
	}
}

func (s *swapTransformer) current() value.Transformer {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.mu.cur
}

// TransformFromStorage implements value.Transformer.
func (s *swapTransformer) TransformFromStorage(ctx context.Context, data []byte, dataCtx value.Context) ([]byte, bool, error) {
	return s.current().TransformFromStorage(ctx, data, dataCtx)
}

// TransformToStorage implements value.Transformer.
func (s *swapTransformer) TransformToStorage(ctx context.Context, data []byte, dataCtx value.Context) ([]byte, error) {
	return s.current().TransformToStorage(ctx, data, dataCtx)
}

// corruptTransformer writes like the transformer it wraps and fails
// every read, as a value whose bits were flipped would.
type corruptTransformer struct{ value.Transformer }

// errCorrupt is corruptTransformer's read error.
var errCorrupt = errors.New("k8s compat test: stored value is corrupt")

// TransformFromStorage implements value.Transformer.
func (corruptTransformer) TransformFromStorage(context.Context, []byte, value.Context) ([]byte, bool, error) {
	return nil, true, errCorrupt
}
