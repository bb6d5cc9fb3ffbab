package keyfmt

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

func TestQuote(t *testing.T) {
	long := bytes.Repeat([]byte("k"), 5<<10)
	for _, c := range []struct {
		key  []byte
		want string
	}{
		{nil, `""`},
		{[]byte("hello"), `"hello"`},
		{[]byte("a\x00b"), `"a\x00b"`},
		{bytes.Repeat([]byte("x"), MaxShown), fmt.Sprintf("%q", bytes.Repeat([]byte("x"), MaxShown))},
		{long, `"` + strings.Repeat("k", MaxShown) + `..." (5120 bytes)`},
		// A two-byte character straddling the cut is left out whole.
		{append(bytes.Repeat([]byte("x"), MaxShown-1), "é and more"...), `"` + strings.Repeat("x", MaxShown-1) + `..." (74 bytes)`},
		// Binary keys are escaped as %q escapes them.
		{bytes.Repeat([]byte{0xff}, 100), `"` + strings.Repeat(`\xff`, MaxShown) + `..." (100 bytes)`},
	} {
		if got := Quote(c.key); got != c.want {
			t.Errorf("Quote(%d bytes) = %s, want %s", len(c.key), got, c.want)
		}
	}
}
