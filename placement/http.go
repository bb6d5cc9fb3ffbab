package placement

import (
	_ "embed"
	"net/http"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

//go:embed web/status.html
var statusPage []byte

// RegisterHTTP adds placement's HTTP endpoints to mux:
//
//	GET /             the live status page (HTML, no external assets)
//	GET /api/status   cluster status, nodes and shards as JSON (what the page shows)
//
// Requests reaching a follower are answered by the leader, as over gRPC.
func RegisterHTTP(mux *http.ServeMux, s *Service) {
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(statusPage)
	})
	mux.HandleFunc("GET /api/status", func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		cs, err := s.GetClusterStatus(ctx, &pb.ClusterStatusRequest{})
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		nodes, err := s.ListNodes(ctx, &pb.ListNodesRequest{})
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		shards, err := s.ListShards(ctx, &pb.ListShardsRequest{})
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, &pb.StatusPage{Cluster: cs, Nodes: nodes.GetNodes(), Shards: shards.GetShards()})
	})
}

func writeJSON(w http.ResponseWriter, m proto.Message) {
	b, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}
