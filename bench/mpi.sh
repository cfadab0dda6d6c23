#!/bin/sh
# bench/mpi.sh (make bench-mpi): scaling of data-parallel icl-train on one
# machine (loopback): SmolLM2-135M's architecture (hidden 576, 30 layers,
# 9/3 heads, intermediate 1536, vocab 49152, tied; random weights: speed
# does not depend on them), full fine-tune and LoRA, as
#   2 ranks x 1 thread  (mpirun -np 2 icl-train --threads 1), with the
#                       all-reduce overlapped with the backward
#                       (ICL_MPI_OVERLAP=1, the default across hosts) and
#                       after it (ICL_MPI_OVERLAP=0, the default on one host)
#   1 rank  x 2 threads (icl-train --threads 2)
#   1 rank  x 1 thread  (icl-train --threads 1)
# at the same global batch (2 ranks x BENCH_BATCH/2 rows = 1 x BENCH_BATCH).
# Reports total tokens/s: rank 0's "tokens_per_s" (it counts its own
# tokens) times the ranks, the median of the steps after BENCH_WARMUP.
# The cost of the all-reduce shows as 2x1 against twice 1x1.  Needs an idle
# machine with 2+ cores; append the table to bench/RESULTS.md by hand.
# Sizes: BENCH_BATCH (8) BENCH_SEQ (150) BENCH_STEPS (8) BENCH_WARMUP (2).
# LoRA: BENCH_LORA_ARGS (default "--lora-r 16 --lora-targets all-linear",
# as the model on paper in doc/mpi.md), run only when icl-train
# --help mentions --lora.
set -eu
cd "$(dirname "$0")/.."
B=${BENCH_BATCH:-8} S=${BENCH_SEQ:-150} N=${BENCH_STEPS:-8} W=${BENCH_WARMUP:-2}
LORA_ARGS=${BENCH_LORA_ARGS:---lora-r 16 --lora-targets all-linear}
V=49152
BIN=$(pwd)/bin
command -v mpirun >/dev/null || { echo "bench-mpi: no mpirun (make deps)"; exit 1; }
ldd "$BIN/icl-train" | grep -q libmpi || { echo "bench-mpi: icl-train built without MPI"; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
TMP=$(mktemp -d "${TMPDIR:-/tmp}/icl-bench-mpi.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# A byte-level tokenizer of exactly V ids (its vocabulary is what matters).
python3 bench/bytelevel_tok.py "$V" >"$TMP/tok.json"
awk -v V="$V" -v S="$S" -v R=$((B * (N + 1))) 'BEGIN { srand(1); for (r = 0; r < R; r++) {
	s = "\t"; for (i = 0; i < S; i++) s = s (i ? " " : "") int(rand() * V); print s } }' >"$TMP/data.tok"

# The base model folder, once (from scratch, saved after 1 step).
"$BIN/icl-train" -q --arch llama -t "$TMP/tok.json" --hidden-size 576 --num-hidden-layers 30 \
	--num-attention-heads 9 --num-key-value-heads 3 --intermediate-size 1536 --seq-len $((S + 2)) \
	--max-steps 1 --batch-size 1 -o "$TMP/base" "$TMP/data.tok" >/dev/null

# median tokens/s of rank 0's metrics after the warm-up, times the ranks
tps() { # metrics ranks
	sed -n 's/.*"tokens_per_s": \([0-9.]*\).*/\1/p' "$1" | tail -n +$((W + 1)) | sort -n |
		awk -v k="$2" '{ a[NR] = $1 } END { m = NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%.1f", m * k }'
}
run() { # label ranks threads overlap extra...
	label=$1 ranks=$2 th=$3 ov=$4; shift 4
	common="-q -m $TMP/base --max-steps $N --no-shuffle --seq-len $((S + 2)) --lr 1e-5 --threads $th"
	if [ "$ranks" -eq 1 ]; then
		"$BIN/icl-train" $common --batch-size "$B" "$@" -o "$TMP/o" "$TMP/data.tok" >"$TMP/m"
	else
		ICL_MPI_OVERLAP=$ov mpirun -np "$ranks" --bind-to core "$BIN/icl-train" $common --batch-size $((B / ranks)) "$@" \
			-o "$TMP/o" "$TMP/data.tok" >"$TMP/m"
	fi
	ovl=-; [ "$ranks" -gt 1 ] && { [ "$ov" = 1 ] && ovl=on || ovl=off; }
	printf '| %s | %d x %d | %s | %s |\n' "$label" "$ranks" "$th" "$ovl" "$(tps "$TMP/m" "$ranks")"
	rm -rf "$TMP/o"
}

echo "| training | ranks x threads | overlapped all-reduce | tokens/s (global batch $B x $S) |"
echo "|---|---|---|---:|"
for cfg in "2 1 1" "2 1 0" "1 2 1" "1 1 1"; do
	set -- $cfg
	run full "$1" "$2" "$3"
done
if "$BIN/icl-train" --help | grep -q -- "--lora"; then
	for cfg in "2 1 1" "2 1 0" "1 2 1" "1 1 1"; do
		set -- $cfg
		run "LoRA ($LORA_ARGS)" "$1" "$2" "$3" $LORA_ARGS
	done
else
	echo "(LoRA: icl-train has no --lora option in this build)"
fi
