package multiraft

import (
	"context"
	"time"
)

// RunTicker calls e.Tick every interval until ctx ends or the engine stops.
// It is the engine's only timer: one for all groups.
func (e *Engine) RunTicker(ctx context.Context, interval time.Duration) {
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
