package tso

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Store persists the oracle's limit: the timestamp below which every
// timestamp it hands out lies. Later, placementd's catalogue implements it
// through its Raft group. The Oracle calls it from one goroutine at a
// time (Load once, in Open; then Save calls one after another, never two
// at once), with limits that only grow. What it must guarantee is in the
// package doc ("What the Store must guarantee").
type Store interface {
	// Load returns the highest limit any Save has persisted, or 0 if none
	// has. It must see every Save that returned nil, on any replica and
	// in any earlier term.
	Load(ctx context.Context) (Timestamp, error)
	// Save persists limit and returns nil only once it is durable and
	// committed, so that every later Load returns limit or more. A Save
	// that returns an error may or may not have persisted limit. It must
	// return soon after ctx ends.
	Save(ctx context.Context, limit Timestamp) error
}

// Clock tells the oracle the time. It may be called from many goroutines
// at once. It may go backwards (the oracle never does).
type Clock interface {
	Now() time.Time
}

// ClockFunc adapts a function to a Clock.
type ClockFunc func() time.Time

// Now returns f().
func (f ClockFunc) Now() time.Time { return f() }

// SystemClock is the Clock of time.Now.
var SystemClock Clock = ClockFunc(time.Now)

// Defaults of Config's fields.
const (
	DefaultWindow      = 3 * time.Second
	DefaultSaveTimeout = 10 * time.Second
)

// Config configures an Oracle. Its zero value means defaults. Open does
// not keep or modify the caller's Config; it works on a copy.
type Config struct {
	// Window is how far ahead of the clock (or of the last timestamp
	// handed out, if that is ahead) each saved limit lies. Default
	// DefaultWindow (3 s); from 3 ms to 1 h, a whole number of
	// milliseconds. A longer window means fewer Saves (one every
	// Window*2/3 at a steady clock) but lets a new leader start up to
	// Window ahead of the clock, with physical parts that stay ahead of
	// real time until the clock catches up.
	Window time.Duration
	// SaveTimeout bounds each Save. Default DefaultSaveTimeout (10 s). A
	// Save that times out fails the Oracle like any failed Save.
	SaveTimeout time.Duration
	// Clock is the oracle's source of physical time. Default SystemClock.
	// Tests inject a fake.
	Clock Clock
}

// withDefaults returns a copy of c with its zero fields filled in.
func (c Config) withDefaults() Config {
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.SaveTimeout == 0 {
		c.SaveTimeout = DefaultSaveTimeout
	}
	if c.Clock == nil {
		c.Clock = SystemClock
	}
	return c
}

// Validate reports every problem with c at once (zero fields stand for
// their defaults and are valid).
func (c Config) Validate() error {
	var errs []error
	if c.Window != 0 {
		if c.Window < 3*time.Millisecond {
			errs = append(errs, fmt.Errorf("tso: Window %s is below 3ms", c.Window))
		}
		if c.Window > time.Hour {
			errs = append(errs, fmt.Errorf("tso: Window %s is above 1h", c.Window))
		}
		if c.Window%time.Millisecond != 0 {
			errs = append(errs, fmt.Errorf("tso: Window %s is not a whole number of milliseconds", c.Window))
		}
	}
	if c.SaveTimeout < 0 {
		errs = append(errs, fmt.Errorf("tso: SaveTimeout %s is negative", c.SaveTimeout))
	}
	return errors.Join(errs...)
}
