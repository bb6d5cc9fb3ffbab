package concurrency

import (
	"testing"

	"github.com/flotilla-kv/flotilla/internal/testutil"
)

// TestMain fails the package's run if a test leaves a goroutine behind:
// a closed Session, a finished Lock and an ended Observe stop everything
// they started.
func TestMain(m *testing.M) { testutil.VerifyNoLeaks(m) }
