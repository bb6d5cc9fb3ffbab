// Package keyfmt formats user keys for error and log messages. Keys may be
// kilobytes long and binary; a message that quoted them whole would bury
// what it says under the key. Quote shows the first MaxShown bytes, quoted
// as Go's %q would, and the length of what it left out.
//
// It depends on the standard library only, so the router, the servers and
// the command-line client can all use it.
package keyfmt

import (
	"strconv"
	"unicode/utf8"
)

// MaxShown is how many bytes of a key Quote shows.
const MaxShown = 64

// Quote returns key quoted like fmt's %q. A key longer than MaxShown bytes
// is cut at MaxShown bytes (backed off to the start of a UTF-8 sequence
// that straddles the cut) and followed by its length:
// "aaaa..." (5120 bytes). Safe for concurrent use; it does not keep key.
func Quote(key []byte) string {
	if len(key) <= MaxShown {
		return strconv.Quote(string(key))
	}
	cut := MaxShown
	// Do not split a multi-byte character: back off to its first byte when
	// the bytes from there on form one valid sequence cut short.
	for i := cut - 1; i >= 0 && i > cut-utf8.UTFMax; i-- {
		if utf8.RuneStart(key[i]) {
			if !utf8.FullRune(key[i:cut]) {
				cut = i
			}
			break
		}
	}
	q := strconv.Quote(string(key[:cut]))
	return q[:len(q)-1] + `..." (` + strconv.Itoa(len(key)) + " bytes)"
}
