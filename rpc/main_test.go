package rpc

import (
	"testing"

	"github.com/flotilla-kv/flotilla/internal/testutil"
)

// TestMain fails the package's run if a test leaves a goroutine behind:
// a stack's cleanup stops its gRPC server, transport, engine and
// connections, and each must stop every goroutine it started.
func TestMain(m *testing.M) { testutil.VerifyNoLeaks(m) }
