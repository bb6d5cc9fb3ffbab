package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"
)

// placementConnectTimeout is how long the CLI waits for a connection to
// one placement address before it tries the next, and
// placementAttemptTimeout how long it waits for one address's answer: a
// follower forwards to the leader it knows, and when that leader hangs
// (paused, partitioned) the forwarded call would hang as long as the
// command's deadline allows, while the others elect a new one.
const (
	placementConnectTimeout = 2 * time.Second
	placementAttemptTimeout = 3 * time.Second
)

// placementRetryPause is the pause between two rounds over every placement
// address, while the replicas that answered elect a leader.
const placementRetryPause = 200 * time.Millisecond

// placementConn is a grpc.ClientConnInterface over every --placement
// address, for the Placement client of the inspection commands (status,
// nodes, shards, drain). A call goes first to the address that answered
// last, and moves to the next one when an address cannot be connected to
// within placementConnectTimeout, does not answer within
// placementAttemptTimeout, or answers Unavailable or DeadlineExceeded (a
// follower forwards to the leader; it answers Unavailable while there is
// none, or while the leader it knows is gone).
// Any other answer, success or error, is final. When a round over every
// address found one that answered, it pauses and goes round again until
// the call's context ends, as during a placement election; when no address
// could even be connected to, the call fails at once, naming each address
// and why. Safe for concurrent use.
type placementConn struct {
	addrs []string
	conns []*grpc.ClientConn
	// next is the index of the address to try first.
	next atomic.Int64
}

var _ grpc.ClientConnInterface = (*placementConn)(nil)

// dialPlacement makes a placementConn over addrs with opts, without
// connecting yet.
func dialPlacement(addrs []string, opts ...grpc.DialOption) (*placementConn, error) {
	if len(addrs) == 0 {
		return nil, errors.New("--placement: no address given")
	}
	p := &placementConn{addrs: addrs}
	opts = append([]grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
		MinConnectTimeout: placementConnectTimeout,
	})}, opts...)
	for _, a := range p.addrs {
		c, err := grpc.NewClient(a, opts...)
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("--placement %s: %w", a, err)
		}
		p.conns = append(p.conns, c)
	}
	return p, nil
}

// Invoke implements grpc.ClientConnInterface: one unary call, failing over
// as the type describes.
func (p *placementConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	for {
		first := int(p.next.Load())
		var errs []string
		reached := false
		for i := range p.addrs {
			idx := (first + i) % len(p.addrs)
			actx, cancel := context.WithTimeout(ctx, placementAttemptTimeout)
			err := p.conns[idx].Invoke(actx, method, args, reply, opts...)
			cancel()
			if err == nil {
				p.next.Store(int64(idx))
				return nil
			}
			if code := status.Code(err); code != codes.Unavailable && code != codes.DeadlineExceeded {
				return err // placement answered
			}
			errs = append(errs, fmt.Sprintf("%s: %v", p.addrs[idx], err))
			// A connection that is up carried the answer; one that is not
			// never got the call.
			reached = reached || p.conns[idx].GetState() == connectivity.Ready
			if ctx.Err() != nil {
				return status.Errorf(status.Code(err), "no placement replica answered in time (%s)", strings.Join(errs, "; "))
			}
		}
		if !reached {
			return status.Errorf(codes.Unavailable, "placement unreachable at every address (%s)", strings.Join(errs, "; "))
		}
		t := time.NewTimer(placementRetryPause)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return status.Errorf(codes.DeadlineExceeded, "no placement replica answered in time (%s)", strings.Join(errs, "; "))
		}
	}
}

// NewStream implements grpc.ClientConnInterface. The Placement service
// has no streaming calls the CLI makes.
func (p *placementConn) NewStream(context.Context, *grpc.StreamDesc, string, ...grpc.CallOption) (grpc.ClientStream, error) {
	return nil, status.Error(codes.Unimplemented, "flotilla: streaming calls to placement are not supported")
}

// Close closes every connection.
func (p *placementConn) Close() {
	for _, c := range p.conns {
		_ = c.Close()
	}
}
