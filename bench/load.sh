#!/bin/sh
# bench/load.sh (make bench-load): icl-train's tokens/s with and without a
# competing CPU-bound process (one awk loop): icl's default (the thread
# count follows the load, cmd/common/adapt.c: "auto"), all cores fixed
# (--no-adaptive-threads) and 1 thread, for three ways of waiting (issue
# 18, "no collapse under load"):
#   icl       what the programs do by default: OpenMP and BLIS's barriers
#             spin GOMP_SPINCOUNT=1000 times, then sleep (lib/cli.c,
#             cmd/common/blis_wait.c)
#   passive   OMP_WAIT_POLICY=passive: sleep at once
#   spin      GOMP_SPINCOUNT=300000: libgomp's own default, what icl ran with
#             before (BLIS 0.9's barrier then spun without end; here it spins
#             as long as libgomp)
# The goal: under load, the default is not slower than 1 thread by more
# than a few percent, and idle it is as fast as all cores.  (auto: the
# first window of 1 s runs on all cores, then the count drops; the median
# step after 2 warm-up steps is on the adapted count.)  Same Llama as
# bench-train (sizes: BENCH_HIDDEN (256) BENCH_LAYERS (4) BENCH_HEADS (4)
# BENCH_KV (2) BENCH_INTER (768) BENCH_VOCAB (4096) BENCH_BATCH (8)
# BENCH_SEQ (256) BENCH_STEPS (8; the median step after 2 warm-up steps)).
# Run it on an otherwise idle machine: the competitor is the only load it
# should see.
set -eu
cd "$(dirname "$0")/.."
H=${BENCH_HIDDEN:-256} L=${BENCH_LAYERS:-4} NH=${BENCH_HEADS:-4} KV=${BENCH_KV:-2}
I=${BENCH_INTER:-768} V=${BENCH_VOCAB:-4096} B=${BENCH_BATCH:-8} S=${BENCH_SEQ:-256} N=${BENCH_STEPS:-8}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/icl-bench-load.XXXXXX")
BUSY=
trap '[ -z "$BUSY" ] || kill "$BUSY" 2>/dev/null; rm -rf "$TMP"' EXIT

# A byte-level tokenizer of exactly V ids.
python3 bench/bytelevel_tok.py "$V" >"$TMP/tok.json"
awk -v V="$V" -v S="$S" -v R=$((B * (N + 2))) 'BEGIN { srand(1); for (r = 0; r < R; r++) {
	s = "\t"; for (i = 0; i < S; i++) s = s (i ? " " : "") int(rand() * V); print s } }' >"$TMP/data.tok"

median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# run POLICY THREADS: median tokens/s of icl-train; THREADS auto: the
# default (adaptive), all: all cores fixed, N: --threads N
run() {
	case $1 in
	icl) set -- "$2" env -u ICL_NUM_THREADS -u ICL_ADAPT_SECONDS -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT ;;
	passive) set -- "$2" env -u ICL_NUM_THREADS -u ICL_ADAPT_SECONDS -u GOMP_SPINCOUNT OMP_WAIT_POLICY=passive ;;
	spin) set -- "$2" env -u ICL_NUM_THREADS -u ICL_ADAPT_SECONDS -u OMP_WAIT_POLICY GOMP_SPINCOUNT=300000 ;;
	esac
	case $1 in
	auto) T= ;;
	all) T=--no-adaptive-threads ;;
	*) T="--threads $1" ;;
	esac
	shift
	rm -rf "$TMP/out"
	"$@" bin/icl-train -q --arch llama --hidden-size "$H" --num-hidden-layers "$L" \
		--num-attention-heads "$NH" --num-key-value-heads "$KV" --intermediate-size "$I" -t "$TMP/tok.json" \
		-o "$TMP/out" --batch-size "$B" --seq-len "$S" --max-steps "$N" --save-every 0 --no-shuffle \
		--lr 1e-3 $T "$TMP/data.tok" >"$TMP/m.jsonl"
	tail -n +3 "$TMP/m.jsonl" | sed -n 's/.*"tokens_per_s": \([0-9.]*\).*/\1/p' | median
}

CORES=$(getconf _NPROCESSORS_ONLN)
echo "bench-load: Llama hidden $H layers $L heads $NH kv $KV intermediate $I vocab $V; batch $B x seq $S; $N steps; $CORES cores"
echo "icl: $(bin/icl-train --version | tail -1); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-8s %-8s %14s %14s %10s\n' policy threads idle_tok/s loaded_tok/s loaded/idle
for P in icl passive spin; do
	TS="all 1"
	[ "$P" != icl ] || TS="auto all 1"
	for T in $TS; do
		idle=$(run "$P" "$T")
		awk 'BEGIN { for (;;) x++ }' &
		BUSY=$!
		sleep 1
		busy=$(run "$P" "$T")
		kill "$BUSY"; wait "$BUSY" 2>/dev/null || true; BUSY=
		printf '%-8s %-8s %14.1f %14.1f %9.2fx\n' "$P" "$([ "$T" = all ] && echo "$CORES" || echo "$T")" "$idle" "$busy" \
			"$(echo "$busy $idle" | awk '{ print $1 / $2 }')"
	done
done
echo "(loaded: one 'awk BEGIN { for (;;) x++ }' running the whole time; auto: icl's default, the count follows the load;"
echo " the goal: under load, auto within a few percent of 1 thread or faster, idle as fast as $CORES threads)"
