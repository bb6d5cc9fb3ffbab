package main

import (
	"testing"

	"github.com/flotilla-kv/flotilla/internal/testutil"
)

// TestMain fails the package's run if a test leaves a goroutine behind.
// The nodes run as child processes, but the tests hold gRPC connections
// to them, routers and, in TestTLSFlagsAllOrNone, run itself: each must
// stop what it started.
func TestMain(m *testing.M) { testutil.VerifyNoLeaks(m) }
