package placement

import (
	_ "embed"
	"encoding/json"
	"net/http"

	"google.golang.org/protobuf/encoding/protojson"

	pb "github.com/flotilla-kv/flotilla/rpc/flotillapb"
)

//go:embed web/status.html
var statusPage []byte

// RegisterHTTP adds placement's HTTP endpoints to mux:
//
//	GET /             the live status page (HTML, no external assets)
//	GET /api/status   cluster status, nodes and shards as JSON (what the page shows)
//	GET /api/series   each node's load and bytes over the last hour (SeriesPage, JSON)
//
// /api/status is a StatusPage message in protojson (cluster, nodes,
// shards; proto field names, 64-bit integers as strings) with one more
// member, "health": the StatusPageHealth placement derives from it (the
// banner's problems and the figures per node and shard; see
// status.go). Requests reaching a follower are answered by the leader, as
// over gRPC; the follower derives the same health from the leader's
// answer. /api/series is the leader's own soft state: a follower answers
// 503 and names the leader.
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
		page := &pb.StatusPage{Cluster: cs, Nodes: nodes.GetNodes(), Shards: shards.GetShards()}
		writeStatus(w, page, assessStatus(page, s.cfg.Now(), s.statusLimits()))
	})
	mux.HandleFunc("GET /api/series", func(w http.ResponseWriter, _ *http.Request) {
		if lead, addr := s.observeLeader(); !lead {
			if addr == "" {
				addr = "not elected yet"
			}
			http.Error(w, "placement: the time series are kept by the placement leader ("+addr+"); this replica follows", http.StatusServiceUnavailable)
			return
		}
		b, err := json.Marshal(s.view.seriesPage(s.cfg.Now()))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	})
}

// writeStatus writes page with its health as the answer of /api/status.
func writeStatus(w http.ResponseWriter, page *pb.StatusPage, h StatusPageHealth) {
	b, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(page)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(b, &members); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if members["health"], err = json.Marshal(h); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if b, err = json.Marshal(members); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}
