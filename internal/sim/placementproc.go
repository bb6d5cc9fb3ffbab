package sim

import (
	"context"
	"log/slog"
	"strings"

	"github.com/flotilla-kv/flotilla/placement"
)

// placementProc is a placementd of a fleet run: a simulated process (a
// node on its own crashable filesystem, whose engine hosts the catalogue
// group) running the real placement.Service, with the simulator's
// Runtime (actors.go), Connector (connect.go) and virtual clock. A crash
// kills the service's goroutines and loses its soft state (view,
// operators in flight); the restarted process recovers the catalogue from
// its disk and builds a new Service, as placementd does.
type placementProc struct {
	// cat and cfg are the incarnation's catalogue (its engine's state
	// machine) and configuration, from open; svc is its service, from
	// start.
	cat *placement.Catalogue
	cfg placement.Config
	svc *placement.Service
	// past adds up the operator counts of the services of earlier
	// incarnations.
	past map[string]placement.OperatorCounts
}

// placementBase: placement processes have node IDs placementBase+1,
// placementBase+2, ... (their replica IDs in the catalogue group), apart
// from the shardnodes' 1, 2, ...
const placementBase = 100

// open prepares n's new incarnation: its configuration, and the
// catalogue n's engine opens with.
func (p *placementProc) open(n *node) *placement.Catalogue {
	s := n.s
	fp := &s.fleet.prof
	p.cat, p.svc = &placement.Catalogue{}, nil
	p.cfg = placement.Config{
		ReplicaID:         n.id,
		Peers:             s.fleet.peers,
		ReplicationFactor: fp.rf,
		InitialShards:     fp.initialShards,
		DownAfter:         fp.downAfter,
		SplitSizeBytes:    fp.splitBytes,
		SplitLoad:         fp.splitLoad,
		HeartbeatInterval: heartbeatInterval,
		ScheduleInterval:  scheduleInterval,
		OperatorTimeout:   operatorTimeout,
		Logger:            traceLogger(s, n.addr),
		Now:               s.actors.now,
		Connect:           connector{s: s, from: n},
		Runtime:           procRuntime{as: s.actors, proc: n},
	}
	return p.cat
}

// start builds the service over n's engine, creates the catalogue group
// if the disk holds none, and starts the scheduling loop.
func (p *placementProc) start(n *node) error {
	svc, err := placement.New(p.cfg, p.cat, n.e)
	if err != nil {
		return err
	}
	p.svc = svc
	if err := p.svc.Bootstrap(); err != nil {
		return err
	}
	n.runner = n.s.actors.spawn(n, "placement run", func() { svc.Run(context.Background()) })
	return nil
}

// retire adds up the operator counts of the service of the incarnation
// that ends.
func (p *placementProc) retire() {
	if p.svc == nil {
		return
	}
	if p.past == nil {
		p.past = map[string]placement.OperatorCounts{}
	}
	for k, c := range p.svc.OperatorCounts() {
		o := p.past[k]
		o.Started += c.Started
		o.Done += c.Done
		o.Failed += c.Failed
		p.past[k] = o
	}
	p.svc = nil
}

// counts returns the operator counts of every incarnation so far.
func (p *placementProc) counts() map[string]placement.OperatorCounts {
	out := map[string]placement.OperatorCounts{}
	for k, c := range p.past {
		out[k] = c
	}
	if p.svc != nil {
		for k, c := range p.svc.OperatorCounts() {
			o := out[k]
			o.Started += c.Started
			o.Done += c.Done
			o.Failed += c.Failed
			out[k] = o
		}
	}
	return out
}

// leads reports whether n's placement service leads the catalogue (as its
// engine publishes it).
func (n *node) leads() bool {
	if !n.up() {
		return false
	}
	for _, g := range n.e.Summaries() {
		if g.Group == placement.CatalogueGroup {
			return g.Leading
		}
	}
	return false
}

// traceLogger is a logger whose lines go to the run's trace (without a
// time: the trace's step says when).
func traceLogger(s *simulation, who string) *slog.Logger {
	return slog.New(slog.NewTextHandler(traceWriter{s: s, prefix: who + ": "}, &slog.HandlerOptions{
		Level: slog.LevelInfo,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
}

// traceWriter writes each line to the trace.
type traceWriter struct {
	s      *simulation
	prefix string
}

func (w traceWriter) Write(p []byte) (int, error) {
	w.s.tracef("%s%s", w.prefix, strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// catalogueLeader returns the placement process whose service leads, or
// nil.
func (s *simulation) catalogueLeader() *node {
	var lead *node
	var term uint64
	for _, n := range s.pnodes {
		if !n.up() {
			continue
		}
		for _, g := range n.e.Summaries() {
			if g.Group == placement.CatalogueGroup && g.Leading && (lead == nil || g.Term > term) {
				lead, term = n, g.Term
			}
		}
	}
	return lead
}
