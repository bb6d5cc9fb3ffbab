package bench

import (
	"testing"

	"github.com/flotilla-kv/flotilla/internal/testutil"
)

// TestMain fails the package's run if a test leaves a goroutine behind:
// Run, RunEngine and the drivers stop every goroutine they start.
func TestMain(m *testing.M) { testutil.VerifyNoLeaks(m) }
