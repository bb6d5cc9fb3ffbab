package main

import (
	"context"
	"errors"
	"os/exec"
	"testing"
	"time"

	flt "github.com/flotilla-kv/flotilla/internal/fleet"
)

// cliFleet starts a local fleet (placementd, 3 shardnodes, 4 shards)
// and returns how to run the built flotilla binary against it: command
// makes the process, cli runs it to the end (within a minute) and returns
// its combined output and exit code.
func cliFleet(t *testing.T) (command func(ctx context.Context, args ...string) *exec.Cmd, cli func(args ...string) (string, int)) {
	t.Helper()
	bin := flt.Binary(t, "flotilla")
	f := flt.New(t, 3, "--heartbeat-interval", "250ms")
	f.AddPlacement(1, "--heartbeat-interval", "250ms", "--schedule-interval", "250ms", "--initial-shards", "4")
	f.StartPlacement()
	f.Start()
	env := []string{"FLOTILLA_PLACEMENT=" + f.PlacementAddrs()}
	command = func(ctx context.Context, args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = append(cmd.Environ(), env...)
		return cmd
	}
	cli = func(args ...string) (string, int) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := command(ctx, args...).CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
	return command, cli
}
