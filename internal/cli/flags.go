package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/flotilla-kv/flotilla/multiraft"
)

// EnvPrefix is the prefix of the environment variables Parse reads.
const EnvPrefix = "FLOTILLA_"

// EnvName returns the environment variable Parse reads for flag name:
// EnvPrefix, then the name in upper case with '-' as '_'.
func EnvName(name string) string { return EnvNameWithPrefix(EnvPrefix, name) }

// EnvNameWithPrefix returns the environment variable ParseWithPrefix
// reads for flag name: prefix, then the name in upper case with '-' as
// '_' ("FLOTILLA_BENCH_", "value-size": FLOTILLA_BENCH_VALUE_SIZE).
func EnvNameWithPrefix(prefix, name string) string {
	return prefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// Parse parses args into fs, then fills every flag not set on the command
// line from its environment variable (EnvName). It returns every problem
// at once. fs.Usage is replaced by one that lists each flag with its
// variable.
func Parse(fs *flag.FlagSet, args []string, summary string) error {
	return ParseWithPrefix(fs, args, summary, EnvPrefix)
}

// ParseWithPrefix is Parse reading the variables EnvNameWithPrefix(prefix,
// flag) instead, for a program whose flags must not share names with
// another's (flotilla-bench's --nodes is not a shardnode's). A flag
// registered by VersionFlag is never read from the environment.
func ParseWithPrefix(fs *flag.FlagSet, args []string, summary, prefix string) error {
	fs.Usage = func() { printUsage(fs, fs.Output(), summary, prefix) }
	if err := fs.Parse(args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if _, skip := f.Value.(noEnvironment); set[f.Name] || skip {
			return
		}
		name := EnvNameWithPrefix(prefix, f.Name)
		if v, ok := os.LookupEnv(name); ok {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", name, v, err))
			}
		}
	})
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments: %q", fs.Args()))
	}
	return errors.Join(errs...)
}

// PrintUsage writes summary and every flag of fs with its environment
// variable (EnvName) and default.
func PrintUsage(fs *flag.FlagSet, w io.Writer, summary string) {
	printUsage(fs, w, summary, EnvPrefix)
}

// printUsage is PrintUsage with the variables' prefix.
func printUsage(fs *flag.FlagSet, w io.Writer, summary, prefix string) {
	fmt.Fprintf(w, "%s\n\nFlags (each may also be set by the environment variable shown):\n", summary)
	fs.VisitAll(func(f *flag.Flag) {
		def := ""
		if f.DefValue != "" {
			def = fmt.Sprintf(" (default %q)", f.DefValue)
		}
		env := " [" + EnvNameWithPrefix(prefix, f.Name) + "]"
		if _, skip := f.Value.(noEnvironment); skip {
			env = ""
		}
		fmt.Fprintf(w, "  --%s %s%s\n      %s\n", f.Name, env, def, f.Usage)
	})
}

// Bytes is a byte count flag that accepts 1024, 64KiB, 32MiB, 1GiB, 10MB.
type Bytes int64

// String implements flag.Value.
func (b *Bytes) String() string { return FormatBytes(int64(*b)) }

// Set implements flag.Value.
func (b *Bytes) Set(s string) error {
	n, err := ParseBytes(s)
	if err != nil {
		return err
	}
	*b = Bytes(n)
	return nil
}

var units = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
}

// ParseBytes parses a byte count with an optional unit suffix.
func ParseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseFloat(t, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("invalid byte size %q (examples: 4096, 64KiB, 32MiB)", s)
	}
	return int64(n * float64(mult)), nil
}

// FormatBytes formats n with a binary unit.
func FormatBytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return strconv.FormatInt(n, 10)
}

// Problems collects validation problems and reports them together.
type Problems []string

// Addf records a problem.
func (p *Problems) Addf(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

// Err returns nil or one error listing every problem.
func (p Problems) Err() error {
	if len(p) == 0 {
		return nil
	}
	return fmt.Errorf("invalid configuration:\n  - %s", strings.Join(p, "\n  - "))
}

// NewLogger returns a slog logger writing to w in format "text" or "json"
// at level "debug", "info", "warn" or "error".
func NewLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", format)
}

// ParsePeers parses a list of nodes as "1=host:port,2=host:port".
func ParsePeers(s string) (map[multiraft.NodeID]string, error) {
	m := map[multiraft.NodeID]string{}
	if strings.TrimSpace(s) == "" {
		return m, nil
	}
	for _, part := range strings.Split(s, ",") {
		id, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		n, err := strconv.ParseUint(id, 10, 64)
		if !ok || err != nil || n == 0 || addr == "" {
			return nil, fmt.Errorf("%q is not ID=host:port", part)
		}
		m[multiraft.NodeID(n)] = addr
	}
	return m, nil
}

// Type implements pflag.Value (the name --help shows for the value).
func (b *Bytes) Type() string { return "bytes" }
