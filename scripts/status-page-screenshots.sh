#!/usr/bin/env bash
# Takes the status page screenshots of docs/operations.md on real local
# fleets (flotilla demo: placementd and shardnodes on loopback), in
# headless Chromium (Debian's chromium package; pngquant shrinks the PNGs
# when it is installed):
#
#   docs/status-page-healthy.png       3 nodes, 8 shards, under the demo's
#                                      workload for HEALTHY_LOAD seconds
#   docs/status-page-repair-stuck.png  5 nodes, 8 shards: under load, the
#                                      two nodes that share the most shards
#                                      are killed; placement repairs the
#                                      shards that kept a quorum and cannot
#                                      repair the others
#
# Usage: scripts/status-page-screenshots.sh [OUTDIR] (default docs).
# Variables: SHOTS ("healthy stuck"), which to take; HEALTHY_LOAD (240),
# STUCK_LOAD (120) seconds of load before the screenshot or the kill;
# CLIENTS (8) of the demo's workload. The binaries are built from the
# working tree the script is in.
set -euo pipefail

cd "$(dirname "$0")/.."
out=${1:-docs}
HEALTHY_LOAD=${HEALTHY_LOAD:-240}
STUCK_LOAD=${STUCK_LOAD:-120}
CLIENTS=${CLIENTS:-8}
SHOTS=${SHOTS:-healthy stuck}
command -v chromium >/dev/null || { echo "chromium is not installed ('make browser-deps')" >&2; exit 1; }

work=$(mktemp -d)
demo_pid=
cleanup() {
	if [ -n "$demo_pid" ]; then stop_demo; fi
	rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/bin/" ./cmd/...

# start_demo NAME NODES: starts a demo fleet in the background with a
# workload longer than this script needs; sets demo_pid and url.
start_demo() {
	local log="$work/$1.log"
	setsid "$work/bin/flotilla" demo --bin "$work/bin" --nodes "$2" --shards 8 --clients "$CLIENTS" \
		--workload 30m --dir "$work/$1" >"$log" 2>&1 &
	demo_pid=$!
	for _ in $(seq 120); do
		url=$(sed -n 's/.*status page at \(http[^,]*\),.*/\1/p' "$log")
		if [ -n "$url" ]; then
			echo "$1: $2 nodes, status page $url"
			return
		fi
		sleep 1
	done
	cat "$log" >&2
	echo "$1: the fleet did not start" >&2
	exit 1
}

# stop_demo stops the demo fleet (the demo stops its processes on SIGINT).
stop_demo() {
	kill -INT "$demo_pid" 2>/dev/null || true
	wait "$demo_pid" 2>/dev/null || true
	demo_pid=
}

# shoot FILE HEIGHT: the page at url, 1300 px wide.
shoot() {
	chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size="1300,$2" \
		--virtual-time-budget=5000 --screenshot="$1" "$url" >/dev/null 2>&1
	if command -v pngquant >/dev/null; then pngquant --force --skip-if-larger --output "$1" "$1" || true; fi
	echo "wrote $1"
}

# status_has PYTHON-EXPRESSION: whether the expression holds of s, the
# page's /api/status JSON.
status_has() {
	curl -sf "${url}api/status" | python3 -c "import json, sys; s = json.load(sys.stdin); sys.exit(0 if ($1) else 1)"
}

shot_healthy() {
	start_demo healthy 3
	sleep "$HEALTHY_LOAD"
	status_has 's["health"]["state"] == "ok"' || { echo "healthy: the fleet is not healthy" >&2; exit 1; }
	shoot "$out/status-page-healthy.png" 1560
	stop_demo
}

shot_stuck() {
	start_demo stuck 5
	sleep "$STUCK_LOAD"
	# The two nodes that hold replicas of the most shards together:
	# killing them takes those shards' quorum.
	local pair n pid
	pair=$(curl -sf "${url}api/status" | python3 -c '
import itertools, json, sys
s = json.load(sys.stdin)
sets = [{int(r["node_id"]) for r in x["route"]["shard"]["replicas"]} for x in s["shards"]]
nodes = sorted({n for r in sets for n in r})
best = max(itertools.combinations(nodes, 2), key=lambda p: sum(set(p) <= r for r in sets))
print(*best)')
	for n in $pair; do
		pid=$(ps -o pid=,args= --ppid "$demo_pid" | awk -v n="$n" '$2 ~ /shardnode$/ && $0 ~ "--node-id " n " " {print $1}')
		echo "stuck: killing node $n (pid $pid)"
		kill -9 "$pid"
	done
	# Until placement says it cannot repair some shards and has repaired
	# the others (no operator running), then a minute more for the charts.
	for _ in $(seq 300); do
		if status_has 'any(p["kind"] == "placement-blocked" for p in s["health"]["problems"]) and not any(o["state"] == "running" for o in s["cluster"].get("recent_operators", []))'; then
			break
		fi
		sleep 1
	done
	sleep 60
	status_has 'any(p["kind"] == "placement-blocked" for p in s["health"]["problems"])' || { echo "stuck: placement does not say it is blocked" >&2; exit 1; }
	shoot "$out/status-page-repair-stuck.png" 1750
	stop_demo
}

for s in $SHOTS; do
	"shot_$s"
done
