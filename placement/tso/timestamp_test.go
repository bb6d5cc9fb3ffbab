package tso

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestLayout(t *testing.T) {
	for _, tc := range []struct {
		physical int64
		logical  uint32
		want     Timestamp
	}{
		{0, 0, 0},
		{0, 1, 1},
		{0, LogicalRange - 1, 1<<18 - 1},
		{1, 0, 1 << 18},
		{t0, 5, t0<<18 | 5},
		{MaxPhysical, LogicalRange - 1, 1<<64 - 1},
	} {
		ts := Compose(tc.physical, tc.logical)
		if ts != tc.want {
			t.Errorf("Compose(%d, %d) = %#x, want %#x", tc.physical, tc.logical, uint64(ts), uint64(tc.want))
		}
		if p, l := Physical(ts), Logical(ts); p != tc.physical || l != tc.logical {
			t.Errorf("Physical, Logical(%#x) = %d, %d, want %d, %d", uint64(ts), p, l, tc.physical, tc.logical)
		}
	}
	// The last logical value of a millisecond is just below the first of
	// the next: timestamps order as integers.
	if Compose(7, LogicalRange-1)+1 != Compose(8, 0) {
		t.Errorf("the logical counter does not carry into the physical part")
	}
	if got := Compose(t0, 17).String(); got != "1800000000000.17" {
		t.Errorf("String = %q", got)
	}
}

func TestComposePanicsOutOfRange(t *testing.T) {
	for _, tc := range []struct {
		physical int64
		logical  uint32
	}{{-1, 0}, {MaxPhysical + 1, 0}, {0, LogicalRange}} {
		func() {
			defer func() {
				if r := recover(); r == nil {
					t.Errorf("Compose(%d, %d) did not panic", tc.physical, tc.logical)
				}
			}()
			Compose(tc.physical, tc.logical)
		}()
	}
}

func TestConfigValidateReportsEveryProblem(t *testing.T) {
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("zero Config: %v", err)
	}
	err := Config{Window: 1500 * time.Microsecond, SaveTimeout: -1}.Validate()
	if err == nil {
		t.Fatal("bad Config accepted")
	}
	for _, want := range []string{"below 3ms", "whole number", "SaveTimeout"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %q, missing %q", err, want)
		}
	}
	if err := (Config{Window: 2 * time.Hour}).Validate(); err == nil {
		t.Error("Window of 2h accepted")
	}
	if _, err := Open(t.Context(), &memStore{}, Config{Window: time.Millisecond}); err == nil {
		t.Error("Open accepted an invalid Config")
	}
	if _, err := Open(t.Context(), nil, Config{}); err == nil || errors.Is(err, ErrSaveFailed) {
		t.Errorf("Open without a Store: %v", err)
	}
}
