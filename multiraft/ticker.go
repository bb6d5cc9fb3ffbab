package multiraft

import (
	"context"
	"time"
)

// RunTicker calls e.Tick every interval until ctx ends or the engine stops.
// It is the engine's only timer: one for all groups.
//
// Unless Config.TickInterval was set, it sets it to interval, which bounds
// leases in real time too (see Config.TickInterval).
func (e *Engine) RunTicker(ctx context.Context, interval time.Duration) {
	e.tickInterval.CompareAndSwap(0, int64(interval))
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if e.stopped.Load() {
				return
			}
			e.Tick()
		}
	}
}
