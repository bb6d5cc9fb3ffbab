package main

import (
	"strings"
	"testing"
)

// TestKeyRange turns KEY [END] and --prefix / --from-key into a key or a
// range, and refuses the combinations that make no sense.
func TestKeyRange(t *testing.T) {
	for _, tc := range []struct {
		rf             rangeFlags
		pos            []string
		start, end     string
		ranged         bool
		problemContain string
	}{
		{pos: []string{"k"}, start: "k"},
		{pos: []string{"a", "c"}, start: "a", end: "c", ranged: true},
		{rf: rangeFlags{prefix: true}, pos: []string{"ab"}, start: "ab", end: "ac", ranged: true},
		{rf: rangeFlags{prefix: true}, pos: []string{"a\xff"}, start: "a\xff", end: "b", ranged: true},
		{rf: rangeFlags{prefix: true}, pos: []string{""}, start: "", end: "", ranged: true},
		{rf: rangeFlags{fromKey: true}, pos: []string{"m"}, start: "m", end: "", ranged: true},
		{rf: rangeFlags{prefix: true, fromKey: true}, pos: []string{"a"}, problemContain: "give one"},
		{rf: rangeFlags{prefix: true}, pos: []string{"a", "b"}, problemContain: "give either END or the flag"},
		{pos: []string{"b", "a"}, problemContain: "does not sort after KEY"},
		{pos: []string{"a", "a"}, problemContain: "does not sort after KEY"},
		{pos: []string{"a", ""}, problemContain: "--from-key"},
	} {
		start, end, ranged, problem := tc.rf.keyRange(tc.pos)
		if tc.problemContain != "" {
			if !strings.Contains(problem, tc.problemContain) {
				t.Errorf("%+v %q: problem %q, want it to say %q", tc.rf, tc.pos, problem, tc.problemContain)
			}
			continue
		}
		if problem != "" || string(start) != tc.start || string(end) != tc.end || ranged != tc.ranged {
			t.Errorf("%+v %q = %q, %q, %v (%q), want %q, %q, %v", tc.rf, tc.pos, start, end, ranged, problem, tc.start, tc.end, tc.ranged)
		}
	}
}
