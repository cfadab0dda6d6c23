#!/bin/sh
# bench/load.sh (make bench-load): icl-train's tokens/s with and without a
# competing CPU-bound process (one awk loop), for issue 18's "no collapse
# under load": with another program keeping a core busy, icl's default
# must not be slower than 1 thread by more than a few percent, and idle
# it must be as fast as all cores.
#
# Three thread settings:
#   auto   icl's default: the count follows the load (cmd/common/adapt.c)
#   all    all cores, fixed (--no-adaptive-threads)
#   1      --threads 1
# Each run trains BENCH_STEPS (30) steps; its figure is the steady rate:
# batch tokens over the mean step time of the steps after BENCH_WARMUP (5)
# (a harmonic mean of the steps' tokens_per_s, not a median: a slow step
# counts for its time).  auto's first window of 1 s runs on all cores and
# the count changes between steps; the warm-up steps cover it, and the
# row prints the thread counts auto went through (its notices on stderr).
# BENCH_LOAD_ROUNDS (3) rounds, each running the three settings idle and
# then loaded, in an order rotated from round to round, so that a drift of
# the machine does not favour one setting; the ratios are taken within a
# round, and the summary gives their median and range over the rounds.
#
# BENCH_LOAD_POLICIES=1 adds the older table of ways of waiting, one
# round: OMP_WAIT_POLICY=passive and GOMP_SPINCOUNT=300000 (libgomp's own
# default, what icl ran with before), each with all cores fixed and 1 thread.
# BENCH_LOAD_SPINS="1000 2000 ..." adds a table of spin counts, one round:
# all cores fixed idle and loaded, and the default (auto) loaded, for each
# GOMP_SPINCOUNT (icl's default: ICL_WAIT_SPINS, lib/cli.h).
#
# Model: the Llama of bench-train (BENCH_HIDDEN (256) BENCH_LAYERS (4)
# BENCH_HEADS (4) BENCH_KV (2) BENCH_INTER (768) BENCH_VOCAB (4096)
# BENCH_BATCH (8) BENCH_SEQ (256)).  Run it on an otherwise idle machine:
# the competitor must be the only load it sees (the load average is
# printed before and after).
set -eu
cd "$(dirname "$0")/.."
H=${BENCH_HIDDEN:-256} L=${BENCH_LAYERS:-4} NH=${BENCH_HEADS:-4} KV=${BENCH_KV:-2}
I=${BENCH_INTER:-768} V=${BENCH_VOCAB:-4096} B=${BENCH_BATCH:-8} S=${BENCH_SEQ:-256}
N=${BENCH_STEPS:-30} W=${BENCH_WARMUP:-5} R=${BENCH_LOAD_ROUNDS:-3}
[ "$N" -gt "$W" ] || { echo "bench-load: BENCH_STEPS ($N) must exceed BENCH_WARMUP ($W)" >&2; exit 1; }
TMP=$(mktemp -d "${TMPDIR:-/tmp}/icl-bench-load.XXXXXX")
BUSY=
trap '[ -z "$BUSY" ] || kill "$BUSY" 2>/dev/null; rm -rf "$TMP"' EXIT
T0=$(date +%s)

# A byte-level tokenizer of exactly V ids.
python3 bench/bytelevel_tok.py "$V" >"$TMP/tok.json"
awk -v V="$V" -v S="$S" -v R=$((B * N)) 'BEGIN { srand(1); for (r = 0; r < R; r++) {
	s = "\t"; for (i = 0; i < S; i++) s = s (i ? " " : "") int(rand() * V); print s } }' >"$TMP/data.tok"

median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# run POLICY THREADS: prints "RATE COUNTS": the steady tokens/s of one
# icl-train run and the thread counts it ran on ("2" or "2>1" when auto
# changed its count: from its notices).  THREADS: auto, all or a number.
run() {
	case $1 in
	icl) set -- "$2" env -u ICL_NUM_THREADS -u ICL_ADAPT_SECONDS -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT ;;
	passive) set -- "$2" env -u ICL_NUM_THREADS -u ICL_ADAPT_SECONDS -u GOMP_SPINCOUNT OMP_WAIT_POLICY=passive ;;
	spin) set -- "$2" env -u ICL_NUM_THREADS -u ICL_ADAPT_SECONDS -u OMP_WAIT_POLICY GOMP_SPINCOUNT=300000 ;;
	spin=*) set -- "$2" env -u ICL_NUM_THREADS -u ICL_ADAPT_SECONDS -u OMP_WAIT_POLICY GOMP_SPINCOUNT="${1#spin=}" ;;
	esac
	case $1 in
	auto) T= c=$CORES ;;
	all) T=--no-adaptive-threads c=$CORES ;;
	*) T="--threads $1" c=$1 ;;
	esac
	shift
	rm -rf "$TMP/out"
	"$@" bin/icl-train --no-progress --arch llama --hidden-size "$H" --num-hidden-layers "$L" \
		--num-attention-heads "$NH" --num-key-value-heads "$KV" --intermediate-size "$I" -t "$TMP/tok.json" \
		-o "$TMP/out" --batch-size "$B" --seq-len "$S" --max-steps "$N" --save-every 0 --no-shuffle \
		--lr 1e-3 $T "$TMP/data.tok" >"$TMP/m.jsonl" 2>"$TMP/m.err"
	# the notices: "icl-train: other programs use X of N cores: K thread(s) from step S"
	counts=$(sed -n 's/.*cores: \([0-9]*\) threads* from step.*/\1/p' "$TMP/m.err" | awk -v c="$c" '{ c = c ">" $1 } END { print c }')
	rate=$(sed -n 's/.*"tokens_per_s": \([0-9.]*\).*/\1/p' "$TMP/m.jsonl" | awk -v w="$W" -v bs=$((B * S)) \
		'NR > w && $1 > 0 { t += bs / $1; n++ } END { if (n) printf "%.1f", n * bs / t; else print "nan" }')
	echo "$rate $counts"
}

busy_on() { awk 'BEGIN { for (;;) x++ }' & BUSY=$!; sleep 1; }
busy_off() { kill "$BUSY"; wait "$BUSY" 2>/dev/null || true; BUSY=; }

CORES=$(getconf _NPROCESSORS_ONLN)
echo "bench-load: Llama hidden $H layers $L heads $NH kv $KV intermediate $I vocab $V; batch $B x seq $S;" \
	"$N steps (rate over the last $((N - W))); $R rounds; $CORES cores"
echo "icl: $(bin/icl-train --version | tail -1); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-6s %-7s %-8s %12s %-8s\n' round load threads tokens/s counts
: >"$TMP/ratios"
r=1
while [ "$r" -le "$R" ]; do
	case $((r % 3)) in
	1) ORDER="auto 1 all" ;;
	2) ORDER="1 all auto" ;;
	0) ORDER="all auto 1" ;;
	esac
	for LOAD in idle loaded; do
		[ "$LOAD" = idle ] || busy_on
		for T in $ORDER; do
			set -- $(run icl "$T")
			eval "rate_${LOAD}_$([ "$T" = 1 ] && echo one || echo "$T")=$1"
			printf '%-6s %-7s %-8s %12s %-8s\n' "$r" "$LOAD" "$T" "$1" "$2"
		done
		[ "$LOAD" = idle ] || busy_off
	done
	echo "$rate_loaded_auto $rate_loaded_one $rate_loaded_all $rate_idle_auto $rate_idle_all $rate_idle_one" |
		awk '{ printf "%.4f %.4f %.4f %.4f\n", $1 / $2, $3 / $2, $4 / $5, $5 / $6 }' >>"$TMP/ratios"
	r=$((r + 1))
done
summary() { # COLUMN LABEL
	awk -v k="$1" '{ print $k }' "$TMP/ratios" | median >"$TMP/med"
	awk -v k="$1" -v label="$2" -v med="$(cat "$TMP/med")" 'NR == 1 { lo = hi = $k } { if ($k < lo) lo = $k; if ($k > hi) hi = $k }
		END { printf "  %-44s median %.3fx  range %.3fx .. %.3fx\n", label, med, lo, hi }' "$TMP/ratios"
}
echo "ratios within each round ($R rounds):"
summary 1 "loaded: auto (default) / 1 thread"
summary 2 "loaded: $CORES threads fixed / 1 thread"
summary 3 "idle: auto (default) / $CORES threads fixed"
summary 4 "idle: $CORES threads fixed / 1 thread"
echo "(loaded: one 'awk BEGIN { for (;;) x++ }' running the whole time; the goal: loaded auto/1 not below"
echo " 1 by more than a few percent, idle auto/$CORES as fast as $CORES threads)"

if [ "${BENCH_LOAD_POLICIES:-0}" = 1 ]; then
	echo "ways of waiting (one round):"
	printf '%-8s %-8s %14s %14s %10s\n' policy threads idle_tok/s loaded_tok/s loaded/idle
	for P in passive spin; do
		for T in all 1; do
			set -- $(run "$P" "$T"); idle=$1
			busy_on
			set -- $(run "$P" "$T"); busy=$1
			busy_off
			printf '%-8s %-8s %14.1f %14.1f %9.2fx\n' "$P" "$([ "$T" = all ] && echo "$CORES" || echo "$T")" "$idle" "$busy" \
				"$(echo "$busy $idle" | awk '{ print $1 / $2 }')"
		done
	done
fi
if [ -n "${BENCH_LOAD_SPINS:-}" ]; then
	echo "spin counts (one round; GOMP_SPINCOUNT, which icl keeps):"
	printf '%-10s %14s %16s %16s\n' spins idle_all_tok/s loaded_all_tok/s loaded_auto_tok/s
	for SC in $BENCH_LOAD_SPINS; do
		set -- $(run "spin=$SC" all); idle=$1
		busy_on
		set -- $(run "spin=$SC" all); busy=$1
		set -- $(run "spin=$SC" auto); bauto=$1
		busy_off
		printf '%-10s %14.1f %16.1f %16.1f\n' "$SC" "$idle" "$busy" "$bauto"
	done
fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg); $(($(date +%s) - T0)) s"
