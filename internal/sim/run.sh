#!/bin/sh
# run.sh SEEDS [PROCS]: `make sim`. Runs TestSimulation over seeds
# SEED_START..SEED_START+SEEDS-1 (SEED_START defaults to 1) split into PROCS
# processes of consecutive seeds (the seed drives the process-wide
# crypto/rand, so seeds run one at a time within a process, but processes
# are independent). With one process it is a plain `go test -v`. With more,
# each process logs to $SIM_LOGDIR/partI.log (a fresh temporary directory
# by default); when all have finished their logs are printed, each
# summary line renamed "sim (part I/P, seeds A-B): ...", followed by the
# combined line
#
#	sim: seeds=N violations=V lost=L
#
# The exit status is non-zero if any process failed. Extra flags for the
# test binary (say -progress) go in SIM_FLAGS; GO names the go command.
set -eu
seeds=$1
procs=${2:-1}
go=${GO:-go}
start=${SEED_START:-1}
flags=${SIM_FLAGS:-}
cd "$(dirname "$0")/../.."

if [ "$procs" -le 1 ] || [ "$seeds" -lt "$procs" ]; then
	timeout=$((60 + seeds / 30))m
	echo "$go test -count=1 -v -run '^TestSimulation\$' ./internal/sim -seeds=$seeds -seed-start=$start -timeout=$timeout $flags"
	# shellcheck disable=SC2086
	exec $go test -count=1 -v -run '^TestSimulation$' ./internal/sim -seeds="$seeds" -seed-start="$start" -timeout="$timeout" $flags
fi

logdir=${SIM_LOGDIR:-$(mktemp -d "${TMPDIR:-/tmp}/sim.XXXXXX")}
mkdir -p "$logdir"
logdir=$(cd "$logdir" && pwd)
$go test -c -o "$logdir/sim.test" ./internal/sim
per=$(((seeds + procs - 1) / procs))
timeout=$((60 + per / 30))m
i=1
first=$start
left=$seeds
pids=""
while [ "$i" -le "$procs" ] && [ "$left" -gt 0 ]; do
	n=$per
	[ "$n" -gt "$left" ] && n=$left
	last=$((first + n - 1))
	echo "sim: part $i/$procs: seeds $first-$last, log $logdir/part$i.log"
	# shellcheck disable=SC2086
	(cd internal/sim && "$logdir/sim.test" -test.count=1 -test.v -test.run '^TestSimulation$' -test.timeout="$timeout" \
		-seeds="$n" -seed-start="$first" $flags >"$logdir/part$i.log" 2>&1
	echo $? >"$logdir/part$i.rc") &
	pids="$pids $!"
	echo "$first-$last" >"$logdir/part$i.range"
	first=$((last + 1))
	left=$((left - n))
	i=$((i + 1))
done
parts=$((i - 1))
for p in $pids; do
	wait "$p" || true
done

status=0
total=0
violations=0
lost=0
i=1
while [ "$i" -le "$parts" ]; do
	range=$(cat "$logdir/part$i.range")
	sed "s/^sim: /sim (part $i\/$parts, seeds $range): /" "$logdir/part$i.log"
	rc=$(cat "$logdir/part$i.rc" 2>/dev/null || echo 1)
	[ "$rc" -eq 0 ] || status=1
	line=$(grep '^sim: seeds=' "$logdir/part$i.log" | tail -n 1 || true)
	if [ -z "$line" ]; then
		echo "sim: part $i/$parts (seeds $range) ended without its summary line (exit status $rc)"
		status=1
	else
		total=$((total + $(echo "$line" | sed 's/.*seeds=\([0-9]*\).*/\1/')))
		violations=$((violations + $(echo "$line" | sed 's/.*violations=\([0-9]*\).*/\1/')))
		lost=$((lost + $(echo "$line" | sed 's/.*lost=\([0-9]*\).*/\1/')))
	fi
	i=$((i + 1))
done
echo "sim: logs in $logdir"
echo "sim: seeds=$total violations=$violations lost=$lost"
exit $status
