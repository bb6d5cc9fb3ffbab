package testutil

import (
	"testing"

	"go.uber.org/goleak"
)

// VerifyNoLeaks runs a package's tests and then fails the run if
// goroutines it started are still running (go.uber.org/goleak, which
// retries for a while, so goroutines on their way out do not count).
// Call it as the whole of TestMain in packages that start goroutines.
func VerifyNoLeaks(m *testing.M) {
	goleak.VerifyTestMain(m)
}
