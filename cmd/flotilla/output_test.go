package main

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// TestValueCell: a value longer than the width is cut to the longest
// prefix whose quoted form fits, never inside a character or an escape,
// and says its size; a short value, or width 0, is shown whole.
func TestValueCell(t *testing.T) {
	for _, tc := range []struct {
		v     string
		width int
		want  string
	}{
		{"world", 64, `"world"`},
		{"world", 7, `"world"`},
		{"world", 6, `"worl"… (5 bytes)`},
		{strings.Repeat("v", 1000), 0, `"` + strings.Repeat("v", 1000) + `"`},
		{strings.Repeat("v", 1000), 12, `"vvvvvvvvvv"… (1000 bytes)`},
		// \x00 is four characters quoted: none is cut in half.
		{"ab\x00\x00\x00", 10, `"ab\x00"… (5 bytes)`},
		{"ab\x00\x00\x00", 7, `"ab"… (5 bytes)`},
		// é is two bytes, kept whole or left out.
		{"éééé", 7, `"éé"… (8 bytes)`},
		{"éééé", 8, `"ééé"… (8 bytes)`},
	} {
		got := valueCell([]byte(tc.v), tc.width)
		if got != tc.want {
			t.Errorf("valueCell(%q, %d) = %s, want %s", tc.v, tc.width, got, tc.want)
		}
		if !utf8.ValidString(got) {
			t.Errorf("valueCell(%q, %d) = %q: not valid UTF-8", tc.v, tc.width, got)
		}
	}
}
