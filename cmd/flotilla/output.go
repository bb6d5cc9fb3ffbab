package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Output formats of -w (--write-out), as etcdctl names them.
const (
	formatTable  = "table"  // aligned columns under a header
	formatSimple = "simple" // plain lines: a value, "key\nvalue" pairs, a sentence
	formatJSON   = "json"   // one JSON document (watch, lease keepalive: one a line)
)

// output is a command's -w/--write-out flag and its alias --json.
type output struct {
	write   string
	json    bool
	allowed []string
	format  string // set by resolve: the format to print in
}

// register adds -w and --json to cmd. def is the default format ("": the
// command chooses, as get does between one key and a range), allowed the
// formats the command prints, its default first; help says what each
// prints.
func (o *output) register(cmd *cobra.Command, def, help string, allowed ...string) {
	o.allowed = allowed
	fs := cmd.Flags()
	fs.StringVarP(&o.write, "write-out", "w", def, "output format: "+strings.Join(allowed, ", ")+help)
	fs.BoolVar(&o.json, "json", false, "same as -w json")
	_ = cmd.RegisterFlagCompletionFunc("write-out", cobra.FixedCompletions(allowed, cobra.ShellCompDirectiveNoFileComp))
}

// resolve checks the flags and sets o.format.
func (o *output) resolve(cmd *cobra.Command) error {
	f := o.write
	if o.json {
		if cmd.Flags().Changed("write-out") && f != formatJSON {
			return usagef("--json and -w %s: give one", f)
		}
		f = formatJSON
	}
	if f != "" && !slices.Contains(o.allowed, f) {
		return usagef("-w %q: %s prints %s", f, cmd.CommandPath(), strings.Join(o.allowed, ", "))
	}
	o.format = f
	return nil
}

// isJSON reports whether the command prints JSON.
func (o *output) isJSON() bool { return o.format == formatJSON }

// b64 is bytes as JSON output writes them: standard base64, as etcdctl's
// JSON does, so that any key or value round-trips.
func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func printJSON(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeJSONLine writes v as one line of JSON.
func writeJSONLine(out io.Writer, v any) error {
	return json.NewEncoder(out).Encode(v)
}

// defaultValueWidth is how many characters of a Go-quoted value a table
// shows by default (scan's --value-width): a key and its value stay on one
// line of a terminal.
const defaultValueWidth = 64

// valueCell is v Go-quoted for a table cell, cut to about width characters
// when longer (width 0: never): the longest prefix whose quoted form fits,
// never cutting a character or an escape, then an ellipsis and v's size,
// as in "aaaa"… (5000 bytes).
func valueCell(v []byte, width int) string {
	q := strconv.Quote(string(v))
	if width <= 0 || len(q) <= width {
		return q
	}
	s := string(v)
	n, quoted := 0, 2 // the two quotes
	for n < len(s) {
		_, size := utf8.DecodeRuneInString(s[n:])
		w := len(strconv.Quote(s[n:n+size])) - 2
		if quoted+w > width {
			break
		}
		n, quoted = n+size, quoted+w
	}
	return fmt.Sprintf("%s… (%d bytes)", strconv.Quote(s[:n]), len(v))
}

func table(out io.Writer, header string, rows [][]string) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

// printProto prints m as JSON with its fields' proto names, unset fields
// with their zero value, integers (IDs, revisions, counts) as JSON
// numbers rather than protojson's strings, bytes in base64 and enums by
// name.
func printProto(out io.Writer, m proto.Message) error {
	return printJSON(out, protoJSON(m.ProtoReflect()))
}

// protoJSON is m as a JSON object for printProto.
func protoJSON(m protoreflect.Message) map[string]any {
	obj := map[string]any{}
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if o := fd.ContainingOneof(); o != nil && !o.IsSynthetic() && !m.Has(fd) {
			continue // another member of the oneof is set
		}
		v := m.Get(fd)
		switch {
		case fd.IsList():
			l := v.List()
			a := make([]any, l.Len())
			for j := range a {
				a[j] = protoValue(fd, l.Get(j))
			}
			obj[string(fd.Name())] = a
		case fd.IsMap():
			mm := map[string]any{}
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				mm[k.String()] = protoValue(fd.MapValue(), mv)
				return true
			})
			obj[string(fd.Name())] = mm
		case fd.Message() != nil && !m.Has(fd):
			obj[string(fd.Name())] = nil
		default:
			obj[string(fd.Name())] = protoValue(fd, v)
		}
	}
	return obj
}

// protoValue is one value of field fd for protoJSON.
func protoValue(fd protoreflect.FieldDescriptor, v protoreflect.Value) any {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return protoJSON(v.Message())
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			return string(ev.Name())
		}
		return int32(v.Enum())
	case protoreflect.BytesKind:
		return v.Bytes() // encoding/json writes base64
	case protoreflect.BoolKind:
		return v.Bool()
	case protoreflect.StringKind:
		return v.String()
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return v.Int()
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return v.Uint()
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return v.Float()
	}
	panic(fmt.Sprintf("flotilla: protoJSON: field %s of kind %v", fd.FullName(), fd.Kind()))
}
