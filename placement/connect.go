package placement

import (
	"errors"
	"fmt"

	"google.golang.org/grpc"

	"github.com/flotilla-kv/flotilla/multiraft"
	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

// Connector reaches the processes the service talks to: the Admin service
// of a shardnode and the Placement service of another placement replica
// (to forward a request to the leader). Config.Connect nil means gRPC
// connections made with Config.Dial; the deterministic simulator
// (internal/sim) serves both in-process over its simulated network. The
// clients it returns block until their call is answered or its context
// ends. Implementations are safe for concurrent use.
type Connector interface {
	// Admin returns a client of the Admin service of node, registered at addr.
	Admin(node multiraft.NodeID, addr string) (pb.AdminClient, error)
	// Placement returns a client of the placement replica at addr.
	Placement(addr string) (pb.PlacementClient, error)
}

// dialConnector is the Connector over gRPC connections from dial.
type dialConnector struct {
	dial func(addr string) (*grpc.ClientConn, error)
}

// Admin implements Connector.
func (c dialConnector) Admin(_ multiraft.NodeID, addr string) (pb.AdminClient, error) {
	conn, err := c.dial(addr)
	if err != nil {
		return nil, err
	}
	return pb.NewAdminClient(conn), nil
}

// Placement implements Connector.
func (c dialConnector) Placement(addr string) (pb.PlacementClient, error) {
	conn, err := c.dial(addr)
	if err != nil {
		return nil, err
	}
	return pb.NewPlacementClient(conn), nil
}

// admin returns a client of node's Admin service, at the address the
// catalogue has for it.
func (c *coordinator) admin(node multiraft.NodeID) (pb.AdminClient, error) {
	n, ok := c.cat.load().Node(node)
	if !ok {
		return nil, fmt.Errorf("%w: %d", ErrUnknownNode, node)
	}
	return c.cfg.Connect.Admin(node, n.Address)
}

// ErrUnknownNode: the node never registered.
var ErrUnknownNode = errors.New("placement: unknown node")
