package testutil

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) { VerifyNoLeaks(m) }

// fatalT records Fatalf instead of failing the test.
type fatalT struct {
	testing.TB
	msg string
}

func (f *fatalT) Helper()                           {}
func (f *fatalT) Fatalf(format string, args ...any) { f.msg = format }

func TestEventually(t *testing.T) {
	calls := 0
	Eventually(t, 10*time.Second, func() error {
		if calls++; calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if calls != 3 {
		t.Errorf("cond called %d times, want 3", calls)
	}
	ft := &fatalT{TB: t}
	Eventually(ft, 30*time.Millisecond, func() error { return errors.New("never") })
	if !strings.Contains(ft.msg, "condition not met") {
		t.Errorf("a condition that never holds did not fail the test: %q", ft.msg)
	}
}

func TestContextEndsWithTheTest(t *testing.T) {
	var ctx interface{ Err() error }
	t.Run("inner", func(t *testing.T) {
		c := Context(t, time.Hour)
		if _, ok := c.Deadline(); !ok || c.Err() != nil {
			t.Fatalf("context: deadline %v, err %v", ok, c.Err())
		}
		ctx = c
	})
	if ctx.Err() == nil {
		t.Error("the context outlived its test")
	}
}

func TestProcessCPU(t *testing.T) {
	before := ProcessCPU(t)
	for end := time.Now().Add(20 * time.Millisecond); time.Now().Before(end); {
	}
	if after := ProcessCPU(t); after <= before {
		t.Errorf("CPU time did not grow over 20 ms of spinning: %s then %s", before, after)
	}
}
