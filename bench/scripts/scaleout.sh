#!/usr/bin/env bash
# scaleout.sh [BIN_DIR] [WORK_DIR] [BASE_PORT]: the placement cost of adding
# a node under load. It starts the demo fleet (placementd, 3 shardnodes, 16
# shards, 32 writers through the router for 150 s), lets it settle, starts
# a 4th shardnode, and waits until placement has started no replica
# operator for 20 s. It prints the replicas that moved onto the new node,
# the membership operators placement started meanwhile (every kind but
# create and balance-leader, from placementd's /metrics) and how long the
# fleet took to settle. One moved replica costs one operator when
# placement neither undoes nor repeats a change.
#
#   make build && bench/scripts/scaleout.sh bin /tmp/scaleout 23000
set -u
BIN=${1:-bin}; W=${2:-$(mktemp -d)}; B=${3:-23000}
rm -rf "$W"; mkdir -p "$W"
P=127.0.0.1:$B
N4=
"$BIN/flotilla" demo --bin "$BIN" --dir "$W/demo" --placement-listen $P --workload 150s --duration 400s >"$W/demo.log" 2>&1 &
DEMO=$!
trap 'kill $DEMO $N4 2>/dev/null; wait 2>/dev/null' EXIT
for _ in $(seq 600); do grep -q "fleet ready" "$W/demo.log" 2>/dev/null && break; sleep 0.5; done
PH=$(grep -o "status page at http://[0-9.:]*" "$W/demo.log" | sed "s/.*http:\/\///")
[ -n "$PH" ] || { echo "the demo did not start:"; cat "$W/demo.log"; exit 1; }
ops() { curl -s "http://$PH/metrics" | awk '/^flotilla_placement_operators_started/ && !/balance-leader|create/ { split($0,a," "); s+=a[2] } END { print s+0 }'; }
sleep 10
before=$(ops); t0=$SECONDS
"$BIN/shardnode" --node-id 4 --data-dir "$W/n4" --listen 127.0.0.1:$((B+14)) --http 127.0.0.1:$((B+24)) --placement $P >"$W/n4.log" 2>&1 &
N4=$!
last=-1; stable=0; now=$before
while [ $((SECONDS-t0)) -lt 300 ]; do
  sleep 2
  now=$(ops)
  if [ "$now" = "$last" ]; then stable=$((stable+2)); else stable=0; fi
  last=$now
  [ $stable -ge 20 ] && break
done
r4=$("$BIN/flotilla" nodes --placement $P | awk '$1==4 {print $(NF-2)}')
echo "node4_replicas=$r4 membership_operators=$((now-before)) settled_after=$((SECONDS-t0-stable))s"
"$BIN/flotilla" nodes --placement $P
