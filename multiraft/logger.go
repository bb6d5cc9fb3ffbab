package multiraft

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
)

// raftLogger adapts slog to raft.Logger. Raft's routine chatter goes to
// debug; its warnings and errors keep their level.
type raftLogger struct{ l *slog.Logger }

func newRaftLogger(l *slog.Logger) *raftLogger { return &raftLogger{l: l.With("component", "raft")} }

// enabled reports whether records at level are logged. Nothing is
// formatted for a disabled level: raft's routine chatter (every vote of
// thousands of groups) would otherwise cost CPU for nothing.
func (r *raftLogger) enabled(level slog.Level) bool { return r.l.Enabled(context.Background(), level) }

func (r *raftLogger) log(level slog.Level, v ...any) {
	if r.enabled(level) {
		r.l.Log(context.Background(), level, fmt.Sprint(v...))
	}
}

func (r *raftLogger) logf(level slog.Level, format string, v ...any) {
	if r.enabled(level) {
		r.l.Log(context.Background(), level, fmt.Sprintf(format, v...))
	}
}

func (r *raftLogger) Debug(v ...any)                   { r.log(slog.LevelDebug, v...) }
func (r *raftLogger) Debugf(format string, v ...any)   { r.logf(slog.LevelDebug, format, v...) }
func (r *raftLogger) Info(v ...any)                    { r.log(slog.LevelDebug, v...) }
func (r *raftLogger) Infof(format string, v ...any)    { r.logf(slog.LevelDebug, format, v...) }
func (r *raftLogger) Warning(v ...any)                 { r.log(slog.LevelWarn, v...) }
func (r *raftLogger) Warningf(format string, v ...any) { r.logf(slog.LevelWarn, format, v...) }
func (r *raftLogger) Error(v ...any)                   { r.log(slog.LevelError, v...) }
func (r *raftLogger) Errorf(format string, v ...any)   { r.logf(slog.LevelError, format, v...) }
func (r *raftLogger) Fatal(v ...any) {
	r.l.Log(context.Background(), slog.LevelError, fmt.Sprint(v...))
	os.Exit(1)
}
func (r *raftLogger) Fatalf(format string, v ...any) {
	r.l.Log(context.Background(), slog.LevelError, fmt.Sprintf(format, v...))
	os.Exit(1)
}
func (r *raftLogger) Panic(v ...any) { panic(keepDiskFailure(fmt.Sprint(v...), v)) }
func (r *raftLogger) Panicf(format string, v ...any) {
	panic(keepDiskFailure(fmt.Sprintf(format, v...), v))
}

// keepDiskFailure returns msg, or, if one of args is an error wrapping
// ErrDiskFailure (the log's storage failed to read), an error with msg
// wrapping it, so that the round recovers the panic raft makes of it and
// fails the engine (see round.run).
func keepDiskFailure(msg string, args []any) any {
	for _, a := range args {
		if err, ok := a.(error); ok && errors.Is(err, ErrDiskFailure) {
			return fmt.Errorf("%s: %w", msg, err)
		}
	}
	return msg
}
