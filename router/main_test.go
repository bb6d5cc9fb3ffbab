package router

import (
	"testing"

	"github.com/flotilla-kv/flotilla/internal/testutil"
)

// TestMain fails the package's run if a test leaves a goroutine behind: a
// Client that is closed must stop every goroutine it started.
func TestMain(m *testing.M) { testutil.VerifyNoLeaks(m) }
