package chaos

import (
	"slices"
	"strings"
	"testing"
)

// The watch check must be able to fail: a clean hand-made run, and the
// same run with one planted bug at a time.

func del(client int, key string, call, ret int64, outcome Outcome) Op {
	return Op{Client: client, Kind: OpDelete, Key: key, Call: call, Return: ret, Outcome: outcome}
}

func at(o Op, rev uint64) Op {
	o.Revision = rev
	return o
}

func putEv(key, value string, rev, create, version uint64) WatchEvent {
	return WatchEvent{Key: key, Value: value, Revision: rev, CreateRevision: create, Version: version}
}

func delEv(key string, rev uint64) WatchEvent {
	return WatchEvent{Delete: true, Key: key, Revision: rev}
}

// withPrev returns ev carrying prev as its previous version.
func withPrev(ev, prev WatchEvent) WatchEvent {
	ev.Prev, ev.PrevValue, ev.PrevRevision, ev.PrevCreate, ev.PrevVersion = true, prev.Value, prev.Revision, prev.CreateRevision, prev.Version
	return ev
}

func resp(watcher, session int, t int64, progress uint64, evs ...WatchEvent) WatchRecord {
	return WatchRecord{Watcher: watcher, Session: session, At: t, Progress: progress, Events: evs}
}

func open(watcher, session int, t int64, from uint64) WatchRecord {
	return WatchRecord{Watcher: watcher, Session: session, At: t, Open: true, From: from}
}

// cleanRun is a run the watch check accepts: acknowledged, failed and
// unknown writes of every kind, two watchers, one restarted and with
// previous versions.
func cleanRun() Run {
	ops := []Op{
		at(put(0, "k", "a", 10, 20, OK), 100),
		at(put(0, "j", "j1", 11, 21, OK), 105),
		at(cas(1, "k", "a", "b", 30, 40, true, "", OK), 110),
		at(cas(2, "k", "x", "c", 41, 45, false, "b", OK), 115), // no swap: no event
		at(get(0, "k", "b", 50, 60), 120),
		at(del(1, "k", 70, 80, OK), 130),
		at(del(2, "k", 85, 90, OK), 140),    // of an absent key: no event
		put(0, "k", "d", 100, 110, Unknown), // took effect
		put(1, "k", "e", 120, 130, Unknown), // did not
		put(2, "k", "f", 131, 135, Failed),  // surely not
		del(0, "k", 140, 150, Unknown),      // took effect
		del(1, "j", 141, 151, Failed),       // surely not
		at(final("k", "", 300), 170),
		at(final("j", "j1", 300), 170),
	}
	w0 := []WatchEvent{
		putEv("k", "a", 100, 100, 1), putEv("j", "j1", 105, 105, 1), putEv("k", "b", 110, 100, 2),
		delEv("k", 130), putEv("k", "d", 150, 150, 1), delEv("k", 160),
	}
	// Watcher 1's events carry previous versions.
	w1 := []WatchEvent{w0[0], w0[1], withPrev(w0[2], w0[0]), withPrev(w0[3], w0[2]), w0[4], withPrev(w0[5], w0[4])}
	recs := []WatchRecord{
		open(0, 0, 0, 0),
		resp(0, 0, 5, 99),
		resp(0, 0, 22, 105, w0[0], w0[1]),
		resp(0, 0, 41, 110, w0[2]),
		resp(0, 0, 61, 120),
		resp(0, 0, 81, 130, w0[3]),
		resp(0, 0, 115, 150, w0[4]),
		resp(0, 0, 155, 160, w0[5]),
		resp(0, 0, 310, 170),
		{Watcher: 0, Session: 0, At: 320, Err: "router: closed", Stopped: true},

		{Watcher: 1, Session: 0, At: 6, Open: true, From: 100, PrevKV: true},
		resp(1, 0, 7, 99),
		resp(1, 0, 42, 110, w1[0], w1[1], w1[2]),
		resp(1, 0, 85, 130, w1[3]),
		{Watcher: 1, Session: 0, At: 90, Err: "router: closed", Stopped: true},
		{Watcher: 1, Session: 1, At: 91, Open: true, From: 131, PrevKV: true},
		resp(1, 1, 92, 130),
		resp(1, 1, 160, 160, w1[4], w1[5]),
		resp(1, 1, 311, 170),
	}
	return Run{Ops: ops, Watch: recs}
}

func TestWatchCheckAcceptsCleanRun(t *testing.T) {
	run := cleanRun()
	v, events := CheckWatch(run.Ops, run.Watch)
	if len(v) != 0 {
		t.Fatalf("clean run rejected:\n%s", strings.Join(v, "\n"))
	}
	if events != 12 {
		t.Fatalf("checked %d events, want 12", events)
	}
	if r := CheckRun(run, "", "clean"); len(r.Violations) != 0 || len(r.Lost) != 0 || len(r.Watch) != 0 {
		t.Fatalf("CheckRun: %+v", r)
	}
}

// plant changes a copy of the clean run.
func plant(f func(*Run)) Run {
	run := cleanRun()
	run.Watch = slices.Clone(run.Watch)
	for i := range run.Watch {
		run.Watch[i].Events = slices.Clone(run.Watch[i].Events)
	}
	f(&run)
	return run
}

// record finds the response of watcher w at time t.
func record(run *Run, w int, t int64) *WatchRecord {
	for i := range run.Watch {
		if run.Watch[i].Watcher == w && run.Watch[i].At == t {
			return &run.Watch[i]
		}
	}
	panic("no such record")
}

func TestWatchCheckCatchesPlantedBugs(t *testing.T) {
	for _, tc := range []struct {
		name  string
		plant func(*Run)
		want  string
	}{
		{"missing-event", func(r *Run) {
			record(r, 0, 41).Events = nil // the swapped CAS at 110
		}, `cas("k", "a" -> "b") -> swapped=true current="" @110 ok is missing`},
		{"missing-delete", func(r *Run) {
			record(r, 1, 85).Events = nil // the acknowledged delete at 130
		}, `delete("k") @130 ok is missing`},
		{"duplicate-after-resume", func(r *Run) {
			// The resumed session delivers the delete at 130 again.
			rec := record(r, 1, 92)
			rec.Events = []WatchEvent{delEv("k", 130)}
			rec.Progress = 130
		}, "delivered twice"},
		{"ambiguous-twice", func(r *Run) {
			rec := record(r, 0, 115)
			rec.Events = append(rec.Events, putEv("k", "d", 151, 150, 2))
			rec.Progress = 151
		}, "delivered twice"},
		{"reordered", func(r *Run) {
			rec := record(r, 0, 22)
			rec.Events[0], rec.Events[1] = rec.Events[1], rec.Events[0]
		}, "out of revision order"},
		{"progress-lie", func(r *Run) {
			record(r, 0, 22).Progress = 115 // then the CAS at 110 comes
		}, "the progress promised no event at or below it"},
		{"write-below-progress", func(r *Run) {
			record(r, 1, 7).Progress = 100 // before the put at 100 was called
		}, "a write that began after that progress must be ordered above it"},
		{"event-of-failed-put", func(r *Run) {
			rec := record(r, 0, 155)
			rec.Events = append([]WatchEvent{putEv("k", "f", 155, 150, 2)}, rec.Events...)
		}, "surely not applied"},
		{"event-of-failed-delete", func(r *Run) {
			rec := record(r, 0, 155)
			rec.Events = append(rec.Events, delEv("j", 165))
		}, "a delete the router reported as surely not applied was called before it"},
		{"event-of-unswapped-cas", func(r *Run) {
			rec := record(r, 0, 61)
			rec.Events = []WatchEvent{putEv("k", "c", 115, 100, 3)}
		}, "did not swap"},
		{"event-of-no-write", func(r *Run) {
			rec := record(r, 0, 61)
			rec.Events = []WatchEvent{putEv("k", "zzz", 115, 100, 3)}
		}, "matches no issued write"},
		{"wrong-revision", func(r *Run) {
			rec := record(r, 0, 22)
			rec.Events[1].Revision, rec.Events[1].CreateRevision = 106, 106
			rec.Progress = 106
		}, "its write was acknowledged at revision 105"},
		{"wrong-version", func(r *Run) {
			record(r, 0, 41).Events[0].Version = 3
		}, "want create 100, version 2"},
		{"watch-ended", func(r *Run) {
			record(r, 1, 90).Stopped = false
		}, "ended at 0.000s with an error while the harness still watched"},
		{"stuck-progress", func(r *Run) {
			r.Watch = slices.DeleteFunc(r.Watch, func(rec WatchRecord) bool { return rec.Watcher == 1 && rec.At >= 160 })
		}, "progress 130 never reached the highest acknowledged revision 170"},
		{"stale-read-revision", func(r *Run) {
			r.Ops[4].Revision = 105 // read "b" at 105, when the watch has "a"
		}, `read at revision 105, but the watch has the key at "a" there`},
		{"wrong-prev-kv", func(r *Run) {
			record(r, 1, 42).Events[2].PrevVersion = 2
		}, `want previous version PUT "k"="a" @100`},
		{"missing-prev-kv", func(r *Run) {
			record(r, 1, 160).Events[1].Prev = false
		}, `want previous version PUT "k"="d" @150`},
		{"prev-kv-of-absent", func(r *Run) {
			rec := record(r, 1, 160)
			rec.Events[0] = withPrev(rec.Events[0], putEv("k", "b", 110, 100, 2))
		}, "carries a previous version of a key absent"},
		{"prev-kv-not-asked", func(r *Run) {
			rec := record(r, 0, 41)
			rec.Events[0] = withPrev(rec.Events[0], putEv("k", "a", 100, 100, 1))
		}, "not asked for"},
		{"watchers-disagree", func(r *Run) {
			// Watcher 1 misses the unknown put and delete: nothing it must
			// deliver, but watcher 0 did.
			record(r, 1, 160).Events = nil
		}, "watchers 0 and 1 disagree"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run := plant(tc.plant)
			v, _ := CheckWatch(run.Ops, run.Watch)
			found := false
			for _, s := range v {
				found = found || strings.Contains(s, tc.want)
			}
			if !found {
				t.Fatalf("want a violation with %q, got:\n%s", tc.want, strings.Join(v, "\n"))
			}
		})
	}
}

func TestRunRoundTrip(t *testing.T) {
	run := cleanRun()
	var buf strings.Builder
	if err := WriteRun(&buf, run); err != nil {
		t.Fatal(err)
	}
	got, err := ReadRun(strings.NewReader(buf.String()))
	if err != nil {
		t.Fatal(err)
	}
	ops := slices.Clone(run.Ops)
	slices.SortStableFunc(ops, func(a, b Op) int { return int(a.Call - b.Call) })
	if !slices.Equal(got.Ops, ops) {
		t.Fatalf("ops: read %+v, wrote %+v", got.Ops, ops)
	}
	if len(got.Watch) != len(run.Watch) {
		t.Fatalf("read %d watch records, wrote %d", len(got.Watch), len(run.Watch))
	}
	for i := range run.Watch {
		if got.Watch[i].String() != run.Watch[i].String() || !slices.Equal(got.Watch[i].Events, run.Watch[i].Events) {
			t.Fatalf("watch record %d: read %v, wrote %v", i, got.Watch[i], run.Watch[i])
		}
	}
	// ReadHistory reads the operations of the newer file alike.
	if ops2, err := ReadHistory(strings.NewReader(buf.String())); err != nil || !slices.Equal(ops2, ops) {
		t.Fatalf("ReadHistory: %v, %d ops", err, len(ops2))
	}
}

func TestWatchCheckResumeWithoutResponses(t *testing.T) {
	// A session from a revision that ends before any response: the next
	// resumes from the same revision, which is no gap.
	run := plant(func(r *Run) {
		var recs []WatchRecord
		for _, rec := range r.Watch {
			if rec.Watcher == 1 {
				rec.Session++
			}
			recs = append(recs, rec)
			if rec.Watcher == 1 && rec.Open && rec.Session == 1 {
				// Insert an empty session 0 before it.
				recs = append(recs[:len(recs)-1],
					open(1, 0, 5, 100),
					WatchRecord{Watcher: 1, Session: 0, At: 6, Err: "router: client closed", Stopped: true},
					rec)
			}
		}
		r.Watch = recs
	})
	if v, _ := CheckWatch(run.Ops, run.Watch); len(v) != 0 {
		t.Fatalf("false alarm:\n%s", strings.Join(v, "\n"))
	}
	// A resumed session that skips revisions is reported (a harness fault).
	run = plant(func(r *Run) { record(r, 1, 91).From = 135 })
	if v, _ := CheckWatch(run.Ops, run.Watch); len(v) == 0 || !strings.Contains(strings.Join(v, "\n"), "resumes from 135") {
		t.Fatalf("gap not reported:\n%s", strings.Join(v, "\n"))
	}
}

func TestWatchCheckCountsSessionErrors(t *testing.T) {
	// Five sessions in a row end with an error: three are reported one by
	// one, the rest counted.
	run := plant(func(r *Run) {
		for s := 2; s < 7; s++ {
			r.Watch = append(r.Watch,
				WatchRecord{Watcher: 1, Session: s, At: 400, Open: true, From: 171, PrevKV: true},
				WatchRecord{Watcher: 1, Session: s, At: 401, Err: "router: revision compacted"})
		}
	})
	v, _ := CheckWatch(run.Ops, run.Watch)
	joined := strings.Join(v, "\n")
	if len(v) != 4 || strings.Count(joined, "ended at 0.000s with an error") != 3 || !strings.Contains(joined, "2 more sessions ended with an error") {
		t.Fatalf("session errors:\n%s", joined)
	}
}
