package main

import (
	"context"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// runCLI runs the command line args in process, as main does, and
// returns its standard output, standard error and exit status.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut strings.Builder
	code = execute(context.Background(), args, strings.NewReader(""), &out, &errOut)
	return out.String(), errOut.String(), code
}

// parsed finds the command of the command line args and parses its
// flags without running it, as cobra does before RunE: it returns the
// command (its flags hold their values) and its positional arguments.
func parsed(t *testing.T, args ...string) (*cobra.Command, []string) {
	t.Helper()
	root := newRoot()
	cmd, rest, err := root.Find(args)
	if err != nil {
		t.Fatalf("%q: %v", args, err)
	}
	if err := cmd.ParseFlags(rest); err != nil {
		t.Fatalf("%q: %v", args, err)
	}
	return cmd, cmd.Flags().Args()
}

// flagValue returns the value of flag name of cmd as a string.
func flagValue(t *testing.T, cmd *cobra.Command, name string) string {
	t.Helper()
	f := cmd.Flags().Lookup(name)
	if f == nil {
		t.Fatalf("%s has no flag --%s", cmd.CommandPath(), name)
	}
	return f.Value.String()
}

func TestWrapText(t *testing.T) {
	in := "one two three four five six\n  keep   this   long   preformatted line as it is\nshort"
	want := "one two three\nfour five six\n  keep   this   long   preformatted line as it is\nshort"
	if got := wrapText(in, 13); got != want {
		t.Errorf("wrapText:\n%s\nwant\n%s", got, want)
	}
	// The last word does not go down alone.
	if got, want := wrapText("one two three four five", 13), "one two three\nfour five"; got != want {
		t.Errorf("wrapText:\n%s\nwant\n%s", got, want)
	}
	if got, want := wrapText("one two three four", 13), "one two\nthree four"; got != want {
		t.Errorf("wrapText:\n%s\nwant\n%s", got, want)
	}
}

// TestHelpLeavesNoWordAlone: no line of a command's description, as
// 'flotilla CMD --help' prints it, is one word following a line of the
// same paragraph. That is what a description folded by hand a little
// wider than helpWidth looks like once wrapText folds its lines again.
func TestHelpLeavesNoWordAlone(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		lines := strings.Split(c.Long, "\n")
		for i := 1; i < len(lines); i++ {
			l, prev := lines[i], lines[i-1]
			if l != "" && !strings.HasPrefix(l, " ") && !strings.Contains(l, " ") && prev != "" && !strings.HasPrefix(prev, " ") {
				t.Errorf("%s --help: %q alone on a line after %q", c.CommandPath(), l, prev)
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRoot())
}

// TestGroupCommandsNameTheirSubcommands: lease, shard and node alone, or
// with a name they do not have, are usage errors (exit 2) that list what
// they have, aliases included.
func TestGroupCommandsNameTheirSubcommands(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"lease"}, "no subcommand given: grant, revoke, keepalive, timetolive (ttl) or list"},
		{[]string{"shard"}, "no subcommand given: check, transfer-leader, split or move"},
		{[]string{"node"}, "no subcommand given: forget"},
		{[]string{"node", "remove", "3"}, `unknown subcommand "remove"`},
	} {
		_, stderr, code := runCLI(t, tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("flotilla %s: exit %d, stderr %q; want exit 2 and %q", strings.Join(tc.args, " "), code, stderr, tc.want)
		}
	}
}
