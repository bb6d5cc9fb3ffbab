package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/flotilla-kv/flotilla/router"
)

// The input of flotilla txn is etcdctl's interactive transaction format,
// three sections of one item a line:
//
//	value("k") = "v"          compares, until an empty line
//	mod("k") > "0"
//
//	put k v                   operations run if every compare holds, until an empty line
//	get k --prefix
//
//	del k                     operations run otherwise, until the end of the input
//
// A compare is TARGET("KEY") OP "OPERAND": TARGET is value (or val),
// version (or ver), create, mod or lease; OP is =, !=, < or >; KEY and
// OPERAND are Go-quoted strings ("\x00" escapes allowed); a number may go
// unquoted. version, create and mod take decimal numbers, lease a lease
// ID in hexadecimal (0: no lease). An operation is a line of words
// separated by spaces, a word quoted with "..." (Go escapes) or '...'
// (literal) when it holds spaces or is empty: put KEY VALUE [--lease ID]
// [--prev-kv], get KEY [END] [--prefix | --from-key], del KEY [END]
// [--prefix | --from-key] [--prev-kv].

// txnSections names the sections of the input, for the prompts of an
// interactive session.
var txnSections = [...]string{"compares:", "success requests (get, put, del):", "failure requests (get, put, del):"}

// maxTxnLine is the longest line parseTxn reads (a large value).
const maxTxnLine = 16 << 20

// txnSyntaxError is a line of the input that parseTxn cannot read.
type txnSyntaxError struct {
	line int // 1-based; 0: the input as a whole
	msg  string
}

func (e *txnSyntaxError) Error() string {
	if e.line == 0 {
		return e.msg
	}
	return fmt.Sprintf("line %d: %s", e.line, e.msg)
}

// parseTxn reads a transaction from in in the format above. prompt, if
// not nil, is called with a section's name before its first line is
// read. It returns every line's problem at once, each naming its line
// (errors.Join of *txnSyntaxError), or an error of in.
func parseTxn(in io.Reader, prompt func(section string)) (router.CompareTxn, error) {
	var (
		t        router.CompareTxn
		errs     []error
		section  int
		endedAt  int // the line of the empty line that ended the failure section
		lineNo   int
		anything bool
	)
	if prompt != nil {
		prompt(txnSections[0])
	}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64<<10), maxTxnLine)
	for sc.Scan() {
		lineNo++
		line := strings.TrimSpace(sc.Text())
		bad := func(format string, args ...any) {
			errs = append(errs, &txnSyntaxError{line: lineNo, msg: fmt.Sprintf(format, args...)})
		}
		if line == "" {
			switch {
			case section < 2:
				section++
				if prompt != nil {
					prompt(txnSections[section])
				}
			case endedAt == 0:
				endedAt = lineNo
			}
			continue
		}
		anything = true
		if endedAt != 0 {
			bad("input after the failure operations, which the empty line %d ended", endedAt)
			continue
		}
		if section == 0 {
			cmp, err := parseCompare(line)
			if err != nil {
				bad("%v", err)
				continue
			}
			t.If = append(t.If, cmp)
			continue
		}
		op, err := parseTxnOp(line)
		if err != nil {
			bad("%v", err)
			continue
		}
		if section == 1 {
			t.Then = append(t.Then, op)
		} else {
			t.Else = append(t.Else, op)
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return t, &txnSyntaxError{line: lineNo + 1, msg: fmt.Sprintf("longer than %d bytes", maxTxnLine)}
		}
		return t, fmt.Errorf("reading the transaction: %w", err)
	}
	if len(errs) > 0 {
		return t, errors.Join(errs...)
	}
	if !anything {
		return t, &txnSyntaxError{msg: "the input holds no compare and no operation"}
	}
	return t, nil
}

// compareTargets maps the names of a compare's target to it.
var compareTargets = map[string]router.CompareTarget{
	"value": router.CompareValue, "val": router.CompareValue,
	"version": router.CompareVersion, "ver": router.CompareVersion,
	"create": router.CompareCreateRevision,
	"mod":    router.CompareModRevision,
	"lease":  router.CompareLease,
}

// compareOps are the operators of a compare, "!=" before "=".
var compareOps = []struct {
	text string
	op   router.CompareOp
}{{"!=", router.CompareNotEqual}, {"=", router.CompareEqual}, {"<", router.CompareLess}, {">", router.CompareGreater}}

const compareForm = `want TARGET("KEY") OP "OPERAND", TARGET one of value, version, create, mod, lease and OP one of =, !=, <, >`

// parseCompare parses one compare line, e.g. mod("k") > "0".
func parseCompare(line string) (router.Compare, error) {
	var cmp router.Compare
	name, rest, ok := strings.Cut(line, "(")
	if !ok {
		return cmp, fmt.Errorf("%q is not a compare: %s (an operation goes after the compares' empty line)", line, compareForm)
	}
	name = strings.TrimSpace(name)
	if cmp.Target, ok = compareTargets[strings.ToLower(name)]; !ok {
		return cmp, fmt.Errorf("unknown compare target %q: %s", name, compareForm)
	}
	key, rest, err := quotedPrefix(strings.TrimSpace(rest))
	if err != nil {
		return cmp, fmt.Errorf("%s(...): the key: %v", name, err)
	}
	cmp.Key = []byte(key)
	rest, ok = strings.CutPrefix(strings.TrimSpace(rest), ")")
	if !ok {
		return cmp, fmt.Errorf("%s(%q: want ) after the key: %s", name, key, compareForm)
	}
	rest = strings.TrimSpace(rest)
	found := false
	for _, o := range compareOps {
		if r, ok := strings.CutPrefix(rest, o.text); ok {
			cmp.Op, rest, found = o.op, strings.TrimSpace(r), true
			break
		}
	}
	if !found || strings.HasPrefix(rest, "=") {
		return cmp, fmt.Errorf("%s(%q): want an operator =, !=, < or > after it", name, key)
	}
	operand := rest
	if strings.HasPrefix(rest, `"`) || strings.HasPrefix(rest, "`") {
		var after string
		if operand, after, err = quotedPrefix(rest); err != nil {
			return cmp, fmt.Errorf("%s(%q): the operand: %v", name, key, err)
		}
		if strings.TrimSpace(after) != "" {
			return cmp, fmt.Errorf("%s(%q): %q after the operand", name, key, strings.TrimSpace(after))
		}
	} else if cmp.Target == router.CompareValue || rest == "" || strings.ContainsAny(rest, " \t") {
		return cmp, fmt.Errorf("%s(%q): want the operand quoted, e.g. \"3\"", name, key)
	}
	switch cmp.Target {
	case router.CompareValue:
		cmp.Value = []byte(operand)
	case router.CompareLease:
		if operand != "0" {
			if cmp.Number, err = parseLeaseID(operand); err != nil {
				return cmp, fmt.Errorf("lease(%q): %v (0: no lease)", key, err)
			}
		}
	default:
		if cmp.Number, err = strconv.ParseUint(operand, 10, 64); err != nil {
			return cmp, fmt.Errorf("%s(%q): operand %q: want a number (decimal, >= 0)", name, key, operand)
		}
	}
	return cmp, nil
}

// quotedPrefix reads the Go-quoted string ("..." or `...`) that s starts
// with and returns it unquoted, and what follows it.
func quotedPrefix(s string) (string, string, error) {
	if !strings.HasPrefix(s, `"`) && !strings.HasPrefix(s, "`") {
		return "", "", errors.New(`want a quoted string, e.g. "key"`)
	}
	q, err := strconv.QuotedPrefix(s)
	if err != nil {
		return "", "", fmt.Errorf("%s: an unterminated quoted string or a bad escape", s)
	}
	u, err := strconv.Unquote(q)
	if err != nil {
		return "", "", fmt.Errorf("%s: %v", q, err)
	}
	return u, s[len(q):], nil
}

// splitWords splits an operation's line into words: separated by spaces
// or tabs; "..." is one word with Go escapes, '...' one word taken as
// written.
func splitWords(line string) ([]string, error) {
	var words []string
	for s := strings.TrimLeft(line, " \t"); s != ""; s = strings.TrimLeft(s, " \t") {
		var w string
		switch s[0] {
		case '"', '`':
			var err error
			if w, s, err = quotedPrefix(s); err != nil {
				return nil, err
			}
		case '\'':
			end := strings.IndexByte(s[1:], '\'')
			if end < 0 {
				return nil, fmt.Errorf("%s: an unterminated '...'", s)
			}
			w, s = s[1:1+end], s[2+end:]
		default:
			end := strings.IndexAny(s, " \t")
			if end < 0 {
				end = len(s)
			}
			w, s = s[:end], s[end:]
			if strings.ContainsAny(w, "\"'`") {
				return nil, fmt.Errorf("%s: a quote inside a word; quote the whole word", w)
			}
		}
		if s != "" && s[0] != ' ' && s[0] != '\t' {
			return nil, fmt.Errorf("%s: want a space after a quoted word", s)
		}
		words = append(words, w)
	}
	return words, nil
}

// parseTxnOp parses one operation line: put, get or del with their
// arguments and flags (in any order; -- ends the flags).
func parseTxnOp(line string) (router.TxnOp, error) {
	var op router.TxnOp
	if _, err := parseCompare(line); err == nil {
		return op, fmt.Errorf("%q looks like a compare, but the compares ended at an empty line", line)
	}
	words, err := splitWords(line)
	if err != nil {
		return op, err
	}
	name := words[0]
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var (
		rf     rangeFlags
		prevKV bool
		lease  leaseIDFlag
		want   []int
	)
	switch name {
	case "put":
		op.Kind, want = router.TxnPut, []int{2}
		fs.Var(&lease, "lease", "")
		fs.BoolVar(&prevKV, "prev-kv", false, "")
	case "get":
		op.Kind, want = router.TxnGet, []int{1, 2}
		rf.register(fs, "get")
	case "del":
		op.Kind, want = router.TxnDelete, []int{1, 2}
		rf.register(fs, "delete")
		fs.BoolVar(&prevKV, "prev-kv", false, "")
	default:
		return op, fmt.Errorf("unknown operation %q: want put KEY VALUE, get KEY or del KEY", name)
	}
	if err := fs.Parse(words[1:]); err != nil {
		return op, fmt.Errorf("%s: %v", name, err)
	}
	pos := fs.Args()
	if len(pos) != want[0] && (len(want) == 1 || len(pos) != want[1]) {
		forms := map[string]string{"put": "put KEY VALUE [--lease ID] [--prev-kv]",
			"get": "get KEY [END] [--prefix | --from-key]", "del": "del KEY [END] [--prefix | --from-key] [--prev-kv]"}
		noun := "arguments"
		if len(pos) == 1 {
			noun = "argument"
		}
		return op, fmt.Errorf("%s: %d %s; want %s", name, len(pos), noun, forms[name])
	}
	op.PrevKV = prevKV
	if op.Kind == router.TxnPut {
		op.Key, op.Value, op.Lease = []byte(pos[0]), []byte(pos[1]), uint64(lease)
		return op, nil
	}
	start, end, ranged, problem := rf.keyRange(pos)
	if problem != "" {
		return op, fmt.Errorf("%s: %s", name, problem)
	}
	op.Key, op.End, op.Range = start, end, ranged
	return op, nil
}
