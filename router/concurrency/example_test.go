package concurrency_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/flotilla-kv/flotilla/router"
	"github.com/flotilla-kv/flotilla/router/concurrency"
)

// A Mutex is held by a session's lease. The holder acts only while the
// session lives, and hands the lock's fencing revision to what it
// protects, which refuses any revision lower than one it has seen. (No
// Output: it needs a running cluster.)
func ExampleMutex() {
	ctx := context.Background()
	c, err := router.New(ctx, router.Config{PlacementAddresses: []string{"127.0.0.1:7200"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	s, err := concurrency.NewSession(ctx, c, concurrency.SessionOptions{TTL: 10 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close() // revokes the lease: releases the lock if still held

	m := concurrency.NewMutex(s, "locks/nightly-report")
	if err := m.Lock(ctx); err != nil {
		log.Fatal(err)
	}
	// Work under the lock ends when the session does.
	work, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		select {
		case <-s.Done():
			stop()
		case <-work.Done():
		}
	}()
	fmt.Println("writing the report with fencing revision", m.Revision())
	// storage.Write(work, report, m.Revision()) ...

	if err := m.Unlock(ctx); err != nil {
		log.Fatal(err)
	}
}

// Candidates campaign; the one that wins leads until it resigns or its
// session ends, and anyone can follow who leads. (No Output: it needs a
// running cluster.)
func ExampleElection() {
	ctx := context.Background()
	c, err := router.New(ctx, router.Config{PlacementAddresses: []string{"127.0.0.1:7200"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	s, err := concurrency.NewSession(ctx, c, concurrency.SessionOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	e := concurrency.NewElection(s, "elections/scheduler")
	if err := e.Campaign(ctx, []byte("10.0.0.7:9000")); err != nil {
		log.Fatal(err)
	}
	leader, err := e.Leader(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s leads from revision %d\n", leader.Value, leader.CreateRevision)
	if err := e.Resign(ctx); err != nil {
		log.Fatal(err)
	}
}
