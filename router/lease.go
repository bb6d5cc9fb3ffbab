package router

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"google.golang.org/grpc/status"

	"github.com/flotilla-kv/flotilla/internal/syskeys"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// Leases
//
// A lease lives in its home shard, the shard owning its record key
// (syskeys.LeaseRecordKey), whose leader alone counts its time; every lease
// call is routed there like a write to that key. Keys attached to a lease
// are deleted, as ordinary deletes with revisions, when it expires or is
// revoked, and read as absent from the moment it ended until then. See
// package lease for the guarantees and their clock assumption.

// ErrLeaseNotFound: the lease does not exist (never granted, revoked or
// expired).
var ErrLeaseNotFound = errors.New("router: lease not found")

// leasePutAttempts bounds how often PutLease attaches again after its put
// was stamped past the lease's promise (which needs a lease about to
// expire, or a put delayed by seconds).
const leasePutAttempts = 5

// LeaseGrant is a granted lease.
type LeaseGrant struct {
	ID uint64
	// TTL is the TTL granted, in seconds (a request below the fleet's
	// minimum is raised to it).
	TTL int64
	// Revision is the revision of the grant.
	Revision uint64
}

// LeaseTTL is what TimeToLive reports of a lease.
type LeaseTTL struct {
	ID uint64
	// TTL is the remaining time to live, in whole seconds rounded up;
	// GrantedTTL the TTL granted.
	TTL, GrantedTTL int64
	// Keys are the keys attached to the lease, when asked for.
	Keys [][]byte
}

// leaseCall routes a lease call for lease id to its home's leader. write
// marks calls that change the lease (grant, revoke): their outcome may
// be ambiguous, and they are reported as such.
func (c *Client) leaseCall(ctx context.Context, op string, id uint64, write bool, send func(ctx context.Context, kv pb.KVClient, hdr *pb.RequestHeader) error) error {
	key := syskeys.LeaseRecordKey(id)
	err := c.do(ctx, &call{op: op, key: key, write: write, consistency: Linearizable,
		send: func(ctx context.Context, kv pb.KVClient, _ *route, hdr *pb.RequestHeader) error {
			return send(ctx, kv, hdr)
		}})
	return leaseError(err)
}

// leaseError turns a LeaseNotFound status into ErrLeaseNotFound, keeping
// the status for status.Code.
func leaseError(err error) error {
	if err == nil {
		return nil
	}
	if s, ok := status.FromError(err); ok {
		for _, d := range s.Details() {
			if _, ok := d.(*pb.LeaseNotFound); ok {
				return fmt.Errorf("%w: %w", ErrLeaseNotFound, err)
			}
		}
	}
	return err
}

// Grant grants a lease of ttlSeconds with a fresh ID (an oracle
// timestamp, never handed out before).
func (c *Client) Grant(ctx context.Context, ttlSeconds int64) (LeaseGrant, error) {
	return c.GrantID(ctx, 0, ttlSeconds)
}

// GrantID grants a lease with ID id (0: a fresh one), as etcd's
// LeaseGrant with an ID does: an ID that exists is refused
// (AlreadyExists).
func (c *Client) GrantID(ctx context.Context, id uint64, ttlSeconds int64) (LeaseGrant, error) {
	ctx, cancel := c.callContext(ctx)
	defer cancel()
	route := id
	if route == 0 {
		// A fresh ID's home cannot be known before the node picks it
		// (its record key spreads IDs over the span): ask the home of a
		// random ID, which redirects when the fresh one's is another.
		route = rand.Uint64()
	}
	for range 3 {
		var resp *pb.LeaseGrantResponse
		err := c.leaseCall(ctx, "lease grant", route, true, func(ctx context.Context, kv pb.KVClient, hdr *pb.RequestHeader) error {
			var err error
			resp, err = kv.LeaseGrant(ctx, &pb.LeaseGrantRequest{Header: hdr, Id: id, TtlSeconds: ttlSeconds})
			return err
		})
		if err != nil {
			return LeaseGrant{}, err
		}
		if !resp.GetRedirect() {
			return LeaseGrant{ID: resp.GetId(), TTL: resp.GetTtlSeconds(), Revision: resp.GetRevision()}, nil
		}
		id, route = resp.GetId(), resp.GetId()
	}
	return LeaseGrant{}, fmt.Errorf("%w: lease grant: redirected three times", ErrRetriesExhausted)
}

// Revoke ends lease id at once and deletes every key attached to it
// before returning; it returns the revision at which the lease ended.
// The deletes are ordinary deletes, one per key, each at its own
// revision: watchers see a delete event per key.
func (c *Client) Revoke(ctx context.Context, id uint64) (WriteResult, error) {
	ctx, cancel := c.callContext(ctx)
	defer cancel()
	var resp *pb.LeaseRevokeResponse
	err := c.leaseCall(ctx, "lease revoke", id, true, func(ctx context.Context, kv pb.KVClient, hdr *pb.RequestHeader) error {
		var err error
		resp, err = kv.LeaseRevoke(ctx, &pb.LeaseRevokeRequest{Header: hdr, Id: id})
		return err
	})
	if err != nil {
		return WriteResult{}, err
	}
	return WriteResult{Revision: resp.GetRevision()}, nil
}

// KeepAliveOnce restarts lease id's TTL once and returns the TTL.
func (c *Client) KeepAliveOnce(ctx context.Context, id uint64) (int64, error) {
	ctx, cancel := c.callContext(ctx)
	defer cancel()
	var resp *pb.LeaseKeepAliveResponse
	err := c.leaseCall(ctx, "lease keepalive", id, false, func(ctx context.Context, kv pb.KVClient, hdr *pb.RequestHeader) error {
		var err error
		resp, err = kv.LeaseKeepAlive(ctx, &pb.LeaseKeepAliveRequest{Header: hdr, Id: id})
		return err
	})
	if err != nil {
		return 0, err
	}
	return resp.GetTtlSeconds(), nil
}

// KeepAliveResponse is one keepalive KeepAlive made.
type KeepAliveResponse struct {
	ID  uint64
	TTL int64
}

// KeepAlive keeps lease id alive until ctx ends: it sends a keepalive
// at once and then every third of the TTL, and sends each answer on the
// returned channel (dropping answers the caller does not take in time).
// The channel closes when ctx ends, or when the lease is gone or could
// not be kept alive before it may have expired: the lease's deadline is
// counted from when each keepalive was sent, not answered, so the channel
// closes no later than the home could end the lease. The error of the
// first keepalive is returned directly.
func (c *Client) KeepAlive(ctx context.Context, id uint64) (<-chan KeepAliveResponse, error) {
	last := time.Now()
	ttl, err := c.KeepAliveOnce(ctx, id)
	if err != nil {
		return nil, err
	}
	ch := make(chan KeepAliveResponse, 1)
	ch <- KeepAliveResponse{ID: id, TTL: ttl}
	go func() {
		defer close(ch)
		for {
			every := max(time.Duration(ttl)*time.Second/3, 100*time.Millisecond)
			select {
			case <-ctx.Done():
				return
			case <-time.After(every):
			}
			// The call retries (c.do) until the lease may have expired.
			sent := time.Now()
			actx, cancel := context.WithDeadline(ctx, last.Add(time.Duration(ttl)*time.Second))
			got, err := c.KeepAliveOnce(actx, id)
			cancel()
			if err != nil {
				return
			}
			ttl, last = got, sent
			select {
			case ch <- KeepAliveResponse{ID: id, TTL: ttl}:
			default:
			}
		}
	}()
	return ch, nil
}

// TimeToLive reports lease id's remaining and granted TTL, and with keys
// the keys attached to it.
func (c *Client) TimeToLive(ctx context.Context, id uint64, keys bool) (LeaseTTL, error) {
	ctx, cancel := c.callContext(ctx)
	defer cancel()
	var resp *pb.LeaseTimeToLiveResponse
	err := c.leaseCall(ctx, "lease ttl", id, false, func(ctx context.Context, kv pb.KVClient, hdr *pb.RequestHeader) error {
		var err error
		resp, err = kv.LeaseTimeToLive(ctx, &pb.LeaseTimeToLiveRequest{Header: hdr, Id: id, Keys: keys})
		return err
	})
	if err != nil {
		return LeaseTTL{}, err
	}
	return LeaseTTL{ID: id, TTL: resp.GetTtlSeconds(), GrantedTTL: resp.GetGrantedTtlSeconds(), Keys: resp.GetKeys()}, nil
}

// Leases lists the IDs of the leases that exist, in ID order (a lease
// whose end is under way may still be listed).
func (c *Client) Leases(ctx context.Context) ([]uint64, error) {
	start, end := syskeys.LeaseRecordSpan()
	kvs, _, err := c.scan(ctx, start, end, 0, 0, false, nil)
	if err != nil {
		return nil, err
	}
	var ids []uint64
	for _, kv := range kvs {
		id, ok := syskeys.LeaseFromRecordKey(kv.Key)
		if !ok {
			continue
		}
		if r, err := syskeys.DecodeLeaseRecord(kv.Value); err == nil && !r.Ended {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// PutLease sets key to value attached to lease id: the key is deleted
// when the lease expires or is revoked, and reads as absent from the
// moment the lease ended. A later Put (or PutLease with another lease)
// detaches it. It first asks the lease's home to record the key and to
// promise the lease alive through a revision, then writes the key with
// that promise; a put stamped past it is refused by the shard and
// attached again. Errors as for Put, and ErrLeaseNotFound.
func (c *Client) PutLease(ctx context.Context, key, value []byte, id uint64) (WriteResult, error) {
	if id == 0 {
		return c.PutRev(ctx, key, value)
	}
	ctx, cancel := c.callContext(ctx)
	defer cancel()
	for range leasePutAttempts {
		var attach *pb.LeaseAttachResponse
		err := c.leaseCall(ctx, "lease attach", id, false, func(ctx context.Context, kv pb.KVClient, hdr *pb.RequestHeader) error {
			var err error
			attach, err = kv.LeaseAttach(ctx, &pb.LeaseAttachRequest{Header: hdr, Id: id, Key: key})
			return err
		})
		if err != nil {
			return WriteResult{}, err
		}
		res, err := c.put(ctx, key, value, id, attach.GetUntil())
		if err == nil {
			return res, nil
		}
		if !isLeasePromise(err) {
			return WriteResult{}, err
		}
	}
	return WriteResult{}, fmt.Errorf("%w: put with lease %d: stamped past the lease's promise %d times", ErrRetriesExhausted, id, leasePutAttempts)
}

// isLeasePromise reports whether err is a put refused for its lease's
// promise (nothing was written).
func isLeasePromise(err error) bool {
	if s, ok := status.FromError(err); ok {
		for _, d := range s.Details() {
			if _, ok := d.(*pb.LeasePromise); ok {
				return true
			}
		}
	}
	return false
}

// PutWithTTL sets key to value on a fresh lease of ttl (rounded up to
// whole seconds), which nothing keeps alive: the key lives for ttl. It
// returns the lease, so the caller may keep it alive or revoke it.
func (c *Client) PutWithTTL(ctx context.Context, key, value []byte, ttl time.Duration) (LeaseGrant, WriteResult, error) {
	secs := int64((ttl + time.Second - 1) / time.Second)
	l, err := c.Grant(ctx, secs)
	if err != nil {
		return LeaseGrant{}, WriteResult{}, err
	}
	res, err := c.PutLease(ctx, key, value, l.ID)
	return l, res, err
}

// DeleteIfLease deletes key only if it is attached to lease id, and
// reports whether it deleted it (how a lease's end deletes its keys
// without deleting one attached to another lease since).
func (c *Client) DeleteIfLease(ctx context.Context, key []byte, id uint64) (bool, error) {
	ctx, cancel := c.callContext(ctx)
	defer cancel()
	_, deleted, err := c.delete(ctx, key, id)
	return deleted, err
}

// LeaseStatus asks lease id's home whether it was alive at rev: alive,
// the revision through which it is promised alive (0: none), and the
// revision at which it ended (0: not ended at rev). A node's read fence
// asks it (package lease).
func (c *Client) LeaseStatus(ctx context.Context, id, rev uint64) (alive bool, until, ended uint64, err error) {
	ctx, cancel := c.callContext(ctx)
	defer cancel()
	var resp *pb.LeaseStatusResponse
	err = c.leaseCall(ctx, "lease status", id, false, func(ctx context.Context, kv pb.KVClient, hdr *pb.RequestHeader) error {
		var err error
		resp, err = kv.LeaseStatus(ctx, &pb.LeaseStatusRequest{Header: hdr, Id: id, Revision: rev})
		return err
	})
	if err != nil {
		return false, 0, 0, err
	}
	return resp.GetAlive(), resp.GetUntil(), resp.GetEnded(), nil
}

// ScanSystem reads every key of [start, end) inside the system span
// (syskeys.SystemPrefix), which Scan leaves out unless asked from inside.
func (c *Client) ScanSystem(ctx context.Context, start, end []byte) ([]KeyValue, error) {
	kvs, _, err := c.scan(ctx, start, end, 0, 0, false, nil)
	return kvs, err
}

// clipSystem returns end cut at the system span when [start, end) starts
// below it and reaches into it: a scan of user keys does not return the
// keys the fleet keeps for itself (lease records, for one).
func clipSystem(start, end []byte) []byte {
	if bytes.Compare(start, syskeys.SystemPrefix) >= 0 {
		return end
	}
	if len(end) == 0 || bytes.Compare(end, syskeys.SystemPrefix) > 0 {
		return syskeys.SystemSpanStart()
	}
	return end
}
