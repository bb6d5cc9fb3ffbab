package main

import (
	"bytes"
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/pflag"

	"github.com/flotilla-kv/flotilla/internal/keyfmt"
	"github.com/flotilla-kv/flotilla/router"
)

// rangeFlags turn a command's KEY argument into a range of keys, as
// etcdctl's get and del do: --prefix (every key starting with KEY),
// --from-key (KEY and every key after it), or a second argument END
// ([KEY, END)). get, del and the get and del operations of txn share
// them.
type rangeFlags struct {
	prefix  bool
	fromKey bool
}

// register adds --prefix and --from-key to fs; verb says what the
// command does to the keys ("print", "delete").
func (rf *rangeFlags) register(fs *pflag.FlagSet, verb string) {
	fs.BoolVar(&rf.prefix, "prefix", false, "KEY is a prefix: "+verb+" every key that starts with it (an empty KEY: every key)")
	fs.BoolVar(&rf.fromKey, "from-key", false, verb+" KEY and every key that sorts after it, in byte order (an empty KEY: every key)")
}

// keyRange returns the keys pos (KEY, or KEY END) and the flags name:
// with ranged false the one key start (end nil), otherwise [start, end),
// an empty end meaning the end of the key space. A non-empty problem is
// a usage message: END together with --prefix or --from-key, both of
// those, or an END that does not sort after KEY.
func (rf rangeFlags) keyRange(pos []string) (start, end []byte, ranged bool, problem string) {
	start = []byte(pos[0])
	switch {
	case rf.prefix && rf.fromKey:
		return nil, nil, false, "--prefix and --from-key: give one"
	case len(pos) == 2 && (rf.prefix || rf.fromKey):
		return nil, nil, false, fmt.Sprintf("END %s with --prefix or --from-key: give either END or the flag", keyfmt.Quote([]byte(pos[1])))
	case rf.prefix:
		return start, prefixEnd(start), true, ""
	case rf.fromKey:
		return start, nil, true, ""
	case len(pos) == 2:
		end = []byte(pos[1])
		if bytes.Compare(end, start) <= 0 {
			return nil, nil, false, fmt.Sprintf("END %s does not sort after KEY %s: the range [KEY, END) would be empty by mistake "+
				"(--from-key: to the end of the key space)", keyfmt.Quote(end), keyfmt.Quote(start))
		}
		return start, end, true, ""
	}
	return start, nil, false, ""
}

// kvJSON is a pair as the JSON output of get, scan, del and txn shows
// it: key and value in base64, revisions and lease as numbers; keysOnly
// leaves its value out.
func kvJSON(kv router.KeyValue, keysOnly bool) map[string]any {
	m := map[string]any{"key": b64(kv.Key),
		"create_revision": kv.CreateRevision, "mod_revision": kv.ModRevision, "version": kv.Version}
	if !keysOnly {
		m["value"] = b64(kv.Value)
	}
	addLease(m, kv.Lease)
	return m
}

// kvsJSON is kvJSON of each pair of kvs, never nil (JSON [] for none).
func kvsJSON(kvs []router.KeyValue, keysOnly bool) []map[string]any {
	out := make([]map[string]any, len(kvs))
	for i, kv := range kvs {
		out[i] = kvJSON(kv, keysOnly)
	}
	return out
}

// kvTable prints kvs as a table: KEY, VALUE (unless keysOnly), MOD_REV,
// CREATE_REV, VERSION and LEASE, keys and values Go-quoted.
func kvTable(out io.Writer, kvs []router.KeyValue, keysOnly bool) {
	header := "KEY\tVALUE\tMOD_REV\tCREATE_REV\tVERSION\tLEASE"
	if keysOnly {
		header = "KEY\tMOD_REV\tCREATE_REV\tVERSION\tLEASE"
	}
	rows := make([][]string, len(kvs))
	for i, kv := range kvs {
		row := []string{fmt.Sprintf("%q", kv.Key)}
		if !keysOnly {
			row = append(row, fmt.Sprintf("%q", kv.Value))
		}
		rows[i] = append(row, strconv.FormatUint(kv.ModRevision, 10), strconv.FormatUint(kv.CreateRevision, 10),
			strconv.FormatUint(kv.Version, 10), leaseCell(kv.Lease))
	}
	table(out, header, rows)
}
