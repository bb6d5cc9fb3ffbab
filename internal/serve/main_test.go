package serve

import (
	"testing"

	"github.com/flotilla-kv/flotilla/internal/testutil"
)

// TestMain fails the package's run if a test leaves a goroutine behind:
// ConnPool.Close must stop its connections' goroutines, and StopGRPC the
// one it starts to stop gracefully.
func TestMain(m *testing.M) { testutil.VerifyNoLeaks(m) }
