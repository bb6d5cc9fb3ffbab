package telemetry

import (
	"testing"

	"github.com/flotilla-kv/flotilla/internal/testutil"
)

// TestMain fails the package's run if a test leaves a goroutine behind.
func TestMain(m *testing.M) { testutil.VerifyNoLeaks(m) }
