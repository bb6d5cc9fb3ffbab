#!/bin/sh
# run.sh SEEDS [PROCS]: `make sim`. Runs TestSimulation over seeds
# SEED_START..SEED_START+SEEDS-1 (SEED_START defaults to 1) in each mode of
# SIM_MODES (default "engine fleet": the engine runs, then the fleet runs
# under the real placement service, -fleet), each split into PROCS
# processes of consecutive seeds (the seed drives the process-wide
# crypto/rand, so seeds run one at a time within a process, but processes
# are independent). With one process a mode is a plain `go test -v`. With
# more, each process logs to $SIM_LOGDIR/MODE-partI.log (a fresh temporary
# directory by default); when all have finished their logs are printed,
# each summary line renamed "sim (MODE part I/P, seeds A-B): ...". Each mode
# ends with its line
#
#	sim (MODE): seeds=N violations=V lost=L
#
# and the run with the combined line
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
modes=${SIM_MODES:-engine fleet}
cd "$(dirname "$0")/../.."

logdir=${SIM_LOGDIR:-$(mktemp -d "${TMPDIR:-/tmp}/sim.XXXXXX")}
mkdir -p "$logdir"
logdir=$(cd "$logdir" && pwd)
$go test -c -o "$logdir/sim.test" ./internal/sim

status=0
all=0
allviolations=0
alllost=0

# summary LOG: the numbers of the last summary line of LOG, as "N V L", or
# nothing.
summary() {
	line=$(grep '^sim: seeds=' "$1" | tail -n 1 || true)
	[ -n "$line" ] || return 0
	echo "$line" | sed 's/.*seeds=\([0-9]*\) violations=\([0-9]*\) lost=\([0-9]*\).*/\1 \2 \3/'
}

for mode in $modes; do
	mflags=$flags
	case $mode in
	engine) ;;
	fleet) mflags="-fleet $flags" ;;
	*)
		echo "sim: unknown mode $mode (engine or fleet)"
		exit 2
		;;
	esac
	p=$procs
	[ "$seeds" -lt "$p" ] && p=1
	[ "$p" -lt 1 ] && p=1
	per=$(((seeds + p - 1) / p))
	timeout=$((60 + per / 30))m
	i=1
	first=$start
	left=$seeds
	pids=""
	while [ "$i" -le "$p" ] && [ "$left" -gt 0 ]; do
		n=$per
		[ "$n" -gt "$left" ] && n=$left
		last=$((first + n - 1))
		log="$logdir/$mode-part$i.log"
		if [ "$p" -eq 1 ]; then
			echo "sim ($mode): seeds $first-$last: sim.test -test.run '^TestSimulation\$' -seeds=$n -seed-start=$first $mflags"
			# shellcheck disable=SC2086
			(cd internal/sim && "$logdir/sim.test" -test.count=1 -test.v -test.run '^TestSimulation$' -test.timeout="$timeout" \
				-seeds="$n" -seed-start="$first" $mflags 2>&1; echo $? >"$log.rc") | tee "$log"
		else
			echo "sim ($mode): part $i/$p: seeds $first-$last, log $log"
			# shellcheck disable=SC2086
			(cd internal/sim && "$logdir/sim.test" -test.count=1 -test.v -test.run '^TestSimulation$' -test.timeout="$timeout" \
				-seeds="$n" -seed-start="$first" $mflags >"$log" 2>&1
			echo $? >"$log.rc") &
			pids="$pids $!"
		fi
		echo "$first-$last" >"$log.range"
		first=$((last + 1))
		left=$((left - n))
		i=$((i + 1))
	done
	parts=$((i - 1))
	for pid in $pids; do
		wait "$pid" || true
	done

	total=0
	violations=0
	lost=0
	i=1
	while [ "$i" -le "$parts" ]; do
		log="$logdir/$mode-part$i.log"
		range=$(cat "$log.range")
		if [ "$parts" -gt 1 ]; then
			sed "s/^sim: /sim ($mode part $i\/$parts, seeds $range): /" "$log"
		fi
		rc=$(cat "$log.rc" 2>/dev/null || echo 1)
		[ "$rc" -eq 0 ] || status=1
		nums=$(summary "$log")
		if [ -z "$nums" ]; then
			echo "sim ($mode): part $i/$parts (seeds $range) ended without its summary line (exit status $rc)"
			status=1
		else
			set -- $nums
			total=$((total + $1))
			violations=$((violations + $2))
			lost=$((lost + $3))
		fi
		i=$((i + 1))
	done
	echo "sim ($mode): seeds=$total violations=$violations lost=$lost"
	all=$((all + total))
	allviolations=$((allviolations + violations))
	alllost=$((alllost + lost))
done
echo "sim: logs in $logdir"
echo "sim: seeds=$all violations=$allviolations lost=$alllost"
exit $status
