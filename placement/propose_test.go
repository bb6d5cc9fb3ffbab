package placement

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/multiraft"
)

// TestToStatus: what clients see of propose's errors. A refusal is
// INVALID_ARGUMENT with the catalogue's message; every engine failure is
// UNAVAILABLE, which clients retry, and an ambiguous one says the outcome
// is unknown.
func TestToStatus(t *testing.T) {
	engine := func(err error) error { return fmt.Errorf("placement: catalogue: %w", err) }
	for _, tc := range []struct {
		err     error
		code    codes.Code
		message string
	}{
		{refusedError{fmt.Errorf("%w: counter 2", ErrIDsExhausted)}, codes.InvalidArgument, "placement: IDs exhausted: counter 2"},
		{engine(multiraft.ErrAmbiguous), codes.Unavailable, "the outcome is unknown"},
		{engine(&multiraft.NotLeaderError{}), codes.Unavailable, "placement: catalogue: "},
		{engine(multiraft.ErrStopped), codes.Unavailable, "placement: catalogue: multiraft: engine stopped"},
		{engine(context.DeadlineExceeded), codes.Unavailable, "placement: catalogue: context deadline exceeded"},
		{status.Error(codes.NotFound, "gone"), codes.NotFound, "gone"},
	} {
		got := toStatus(tc.err)
		if s, _ := status.FromError(got); s.Code() != tc.code || !strings.Contains(s.Message(), tc.message) {
			t.Errorf("toStatus(%v) = %v, want %v containing %q", tc.err, got, tc.code, tc.message)
		}
	}
	if toStatus(nil) != nil {
		t.Error("toStatus(nil) is not nil")
	}
	var refused refusedError
	if !errors.As(refusedError{ErrUnknownNode}, &refused) || !errors.Is(refused, ErrUnknownNode) {
		t.Error("a refusal does not unwrap to the catalogue's error")
	}
}
