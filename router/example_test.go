package router_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/flotilla-kv/flotilla/router"
)

// A Client needs the placement addresses and nothing else; it finds the
// shards and their leaders itself. (No Output: it needs a running cluster.)
func Example() {
	ctx := context.Background()
	c, err := router.New(ctx, router.Config{PlacementAddresses: []string{"127.0.0.1:7200", "127.0.0.2:7200"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	if err := c.Put(ctx, []byte("user/42"), []byte("ada")); err != nil {
		log.Fatal(err)
	}
	v, found, err := c.Get(ctx, []byte("user/42"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(v), found)

	// Every key under "user/", across however many shards hold them.
	kvs, err := c.Scan(ctx, []byte("user/"), []byte("user0"), 100, router.WithConsistency(router.Lease))
	if err != nil {
		log.Fatal(err)
	}
	for _, kv := range kvs {
		fmt.Printf("%s=%s\n", kv.Key, kv.Value)
	}

	// The keys change together or not at all, on one shard or several.
	err = c.Batch(ctx, []router.Op{
		{Key: []byte("user/42"), Value: []byte("ada lovelace")},
		{Key: []byte("user/43"), Delete: true},
	})
	if errors.Is(err, router.ErrAmbiguous) {
		fmt.Println("the batch may or may not have applied")
	}
}

// A read-modify-write loop with CompareAndSwap. A write that failed with
// ErrAmbiguous applied once or not at all; reading the key tells which.
func ExampleClient_CompareAndSwap() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := router.New(ctx, router.Config{PlacementAddresses: []string{"127.0.0.1:7200"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	key := []byte("counter")
	for {
		cur, found, err := c.Get(ctx, key)
		if err != nil {
			log.Fatal(err)
		}
		n := 0
		if found {
			fmt.Sscan(string(cur), &n)
		}
		res, err := c.CompareAndSwap(ctx, key, cur, !found, []byte(fmt.Sprint(n+1)))
		switch {
		case errors.Is(err, router.ErrAmbiguous):
			// Retries with the same ClientID and Seq could not settle it;
			// the next Get shows whether the increment happened.
			continue
		case err != nil:
			log.Fatal(err)
		case res.Swapped:
			fmt.Println("counter is now", n+1)
			return
		}
		// Someone else moved the counter: read it again.
	}
}

// TLS, interceptors and other gRPC settings go in through DialOptions;
// the framed KV connections take the same TLS configuration.
func ExampleConfig_tls() {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS13}
	cfg := router.Config{
		PlacementAddresses: []string{"placement.example:7200"},
		DialOptions: []grpc.DialOption{
			grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)),
		},
		FramedTLS:       tlsCfg,
		ReadConsistency: router.Lease,
		Timeout:         2 * time.Second,
		WriteLanes:      128,
	}
	if err := cfg.Validate(); err != nil {
		log.Fatal(err)
	}
}

// List a prefix at one revision, then watch it from just after: every
// change after the snapshot, none twice, none missed, even across
// shards and splits. Remember the last ProgressRevision to resume after
// a restart.
func ExampleClient_Watch() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := router.New(ctx, router.Config{PlacementAddresses: []string{"127.0.0.1:7200"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	start, end := []byte("user/"), []byte("user0")
	snap, err := c.ScanAt(ctx, start, end, 0, 0)
	if err != nil {
		log.Fatal(err)
	}
	state := map[string]string{}
	for _, kv := range snap.KVs {
		state[string(kv.Key)] = string(kv.Value)
	}
	for resp := range c.Watch(ctx, start, end, router.WithStartRevision(snap.Revision+1)) {
		var ce *router.CompactedError
		switch {
		case errors.As(resp.Err, &ce):
			log.Fatalf("fell behind the compaction (%d): list and watch again", ce.CompactRevision)
		case resp.Err != nil:
			log.Fatal(resp.Err)
		}
		for _, ev := range resp.Events {
			if ev.Type == router.EventDelete {
				delete(state, string(ev.KV.Key))
			} else {
				state[string(ev.KV.Key)] = string(ev.KV.Value)
			}
		}
	}
}
