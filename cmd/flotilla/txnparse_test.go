package main

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/flotilla-kv/flotilla/router"
)

// TestParseTxn reads well-formed transactions: every compare target and
// operator, quoted and unquoted operands, operations with their flags in
// any order, quoted words, and the sections' boundaries.
func TestParseTxn(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     router.CompareTxn
	}{{
		name: "every compare",
		in: `value("k") = "v"
val("k") != "w x"
version("k") > "3"
ver("k") < 4
create("k") = "0"
mod("k") < "123"
lease("k") = "0"
LEASE("k") != "694d5765fc71500b"
value("\x00\xff") > ""

put k v
`,
		want: router.CompareTxn{If: []router.Compare{
			{Key: []byte("k"), Target: router.CompareValue, Op: router.CompareEqual, Value: []byte("v")},
			{Key: []byte("k"), Target: router.CompareValue, Op: router.CompareNotEqual, Value: []byte("w x")},
			{Key: []byte("k"), Target: router.CompareVersion, Op: router.CompareGreater, Number: 3},
			{Key: []byte("k"), Target: router.CompareVersion, Op: router.CompareLess, Number: 4},
			{Key: []byte("k"), Target: router.CompareCreateRevision, Op: router.CompareEqual, Number: 0},
			{Key: []byte("k"), Target: router.CompareModRevision, Op: router.CompareLess, Number: 123},
			{Key: []byte("k"), Target: router.CompareLease, Op: router.CompareEqual, Number: 0},
			{Key: []byte("k"), Target: router.CompareLease, Op: router.CompareNotEqual, Number: 0x694d5765fc71500b},
			{Key: []byte("\x00\xff"), Target: router.CompareValue, Op: router.CompareGreater, Value: []byte("")},
		}, Then: []router.TxnOp{{Kind: router.TxnPut, Key: []byte("k"), Value: []byte("v")}}},
	}, {
		name: "operations and branches",
		in: "mod(\"a\") > \"0\"\r\n\r\n" +
			"put a 1 --prev-kv\n" +
			"put --lease 10 \"a b\" 'x \\y'\n" +
			"get a --prefix\n" +
			"get a c\n" +
			"  \tdel --from-key a --prev-kv  \n" +
			"\n" +
			"get a\n" +
			"del -- -a\n" +
			"del a b\n" +
			"\n\n",
		want: router.CompareTxn{
			If: []router.Compare{{Key: []byte("a"), Target: router.CompareModRevision, Op: router.CompareGreater}},
			Then: []router.TxnOp{
				{Kind: router.TxnPut, Key: []byte("a"), Value: []byte("1"), PrevKV: true},
				{Kind: router.TxnPut, Key: []byte("a b"), Value: []byte(`x \y`), Lease: 0x10},
				{Kind: router.TxnGet, Key: []byte("a"), End: []byte("b"), Range: true},
				{Kind: router.TxnGet, Key: []byte("a"), End: []byte("c"), Range: true},
				{Kind: router.TxnDelete, Key: []byte("a"), Range: true, PrevKV: true},
			},
			Else: []router.TxnOp{
				{Kind: router.TxnGet, Key: []byte("a")},
				{Kind: router.TxnDelete, Key: []byte("-a")},
				{Kind: router.TxnDelete, Key: []byte("a"), End: []byte("b"), Range: true},
			},
		},
	}, {
		name: "no compares",
		in:   "\nput k v\n",
		want: router.CompareTxn{Then: []router.TxnOp{{Kind: router.TxnPut, Key: []byte("k"), Value: []byte("v")}}},
	}, {
		name: "only compares, no final newline",
		in:   `version("k") = "0"`,
		want: router.CompareTxn{If: []router.Compare{{Key: []byte("k"), Target: router.CompareVersion, Op: router.CompareEqual}}},
	}, {
		name: "only failure ops",
		in:   "value(\"k\") = \"v\"\n\n\nput k w",
		want: router.CompareTxn{
			If:   []router.Compare{{Key: []byte("k"), Target: router.CompareValue, Op: router.CompareEqual, Value: []byte("v")}},
			Else: []router.TxnOp{{Kind: router.TxnPut, Key: []byte("k"), Value: []byte("w")}},
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			var prompts []string
			got, err := parseTxn(strings.NewReader(tc.in), func(s string) { prompts = append(prompts, s) })
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("parseTxn:\n got %+v\nwant %+v", got, tc.want)
			}
			if len(prompts) == 0 || prompts[0] != "compares:" {
				t.Fatalf("prompts %q, want compares: first", prompts)
			}
		})
	}
}

// TestParseTxnErrors reads malformed transactions: each is refused with
// a *txnSyntaxError naming the line, and every bad line is reported.
func TestParseTxnErrors(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string // substrings of the error, each "line N: ..."
	}{
		{"put k v\n", []string{`line 1: "put k v" is not a compare`}},
		{`value(k) = "v"`, []string{"line 1: value(...): the key: want a quoted string"}},
		{`value("k" = "v"`, []string{`line 1: value("k": want ) after the key`}},
		{`size("k") = "1"`, []string{`line 1: unknown compare target "size"`}},
		{`value("k") == "v"`, []string{"line 1: value(\"k\"): want an operator"}},
		{`value("k") <= "v"`, []string{"line 1: value(\"k\"): want an operator"}},
		{`value("k") ~ "v"`, []string{"line 1: value(\"k\"): want an operator"}},
		{`value("k") = v`, []string{`line 1: value("k"): want the operand quoted`}},
		{`value("k") = "v" extra`, []string{`line 1: value("k"): "extra" after the operand`}},
		{`value("k") = "v`, []string{"line 1: value(\"k\"): the operand:"}},
		{`version("k") > "x"`, []string{`line 1: version("k"): operand "x": want a number`}},
		{`mod("k") > "-1"`, []string{`line 1: mod("k"): operand "-1": want a number`}},
		{`lease("k") = "zz"`, []string{`line 1: lease("k"): lease ID "zz"`}},
		{"\nput k\n", []string{"line 2: put: 1 argument; want put KEY VALUE"}},
		{"\nput k v w\n", []string{"line 2: put: 3 arguments"}},
		{"\nget\n", []string{"line 2: get: 0 arguments"}},
		{"\nget k --limit 3\n", []string{"line 2: get: unknown flag: --limit"}},
		{"\nget k z --prefix\n", []string{"line 2: get: END \"z\" with --prefix or --from-key"}},
		{"\ndel k --prefix --from-key\n", []string{"line 2: del: --prefix and --from-key: give one"}},
		{"\ndel b a\n", []string{"line 2: del: END \"a\" does not sort after KEY \"b\""}},
		{"\nput k v --lease xyz\n", []string{"line 2: put: invalid argument \"xyz\" for \"--lease\" flag"}},
		{"\nput \"k v\n", []string{"line 2: \"k v: an unterminated quoted string"}},
		{"\nput 'k v\n", []string{"line 2: 'k v: an unterminated '...'"}},
		{"\nput \"k\"v x\n", []string{"line 2: v x: want a space after a quoted word"}},
		{"\nput k\"v x\n", []string{"line 2: k\"v: a quote inside a word"}},
		{"\nwatch k\n", []string{`line 2: unknown operation "watch"`}},
		{"\nvalue(\"k\") = \"v\"\n", []string{`line 2: "value(\"k\") = \"v\"" looks like a compare`}},
		{"\n\nput k v\n\nput k w\n", []string{"line 5: input after the failure operations, which the empty line 4 ended"}},
		{"size(\"k\") = \"1\"\nvalue(\"k\") = \"v\"\n\nput k\nput k v\n\nfrob\n", []string{
			`line 1: unknown compare target`, "line 4: put: 1 argument;", `line 7: unknown operation "frob"`}},
		{"", []string{"the input holds no compare and no operation"}},
		{"\n\n  \n", []string{"the input holds no compare and no operation"}},
	} {
		_, err := parseTxn(strings.NewReader(tc.in), nil)
		var se *txnSyntaxError
		if !errors.As(err, &se) {
			t.Errorf("parseTxn(%q) = %v, want a *txnSyntaxError", tc.in, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("parseTxn(%q):\n%v\nwant it to say %q", tc.in, err, w)
			}
		}
		if n := strings.Count(err.Error(), "\n") + 1; n != len(tc.want) {
			t.Errorf("parseTxn(%q): %d problems reported, want %d:\n%v", tc.in, n, len(tc.want), err)
		}
	}
}

// TestParseTxnLongValue reads a line longer than bufio.Scanner's default
// limit (64 KiB): a large value is one put.
func TestParseTxnLongValue(t *testing.T) {
	v := strings.Repeat("x", 1<<20)
	got, err := parseTxn(strings.NewReader("\nput k "+v+"\n"), nil)
	if err != nil || len(got.Then) != 1 || string(got.Then[0].Value) != v {
		t.Fatalf("parseTxn of a 1 MiB value: %v", err)
	}
}
