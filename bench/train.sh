#!/bin/sh
# bench/train.sh (make bench-train): tokens/s of a full training step
# (forward, backward, clipping, AdamW) of icl-train against PyTorch
# (Debian's python3-torch, bench/torch_train.py) on the same Llama
# architecture and batch, measured in the same run, with 1 and 2 threads.
# PyTorch runs as installed and with OMP_WAIT_POLICY=passive (its best
# setting with 2 threads here).  Peak RSS of both from /usr/bin/time -v.
# Sizes: BENCH_HIDDEN (256) BENCH_LAYERS (4) BENCH_HEADS (4) BENCH_KV (2)
# BENCH_INTER (768) BENCH_VOCAB (4096) BENCH_BATCH (8) BENCH_SEQ (256)
# BENCH_STEPS (8; the median step after 2 warm-up steps is reported).
set -eu
cd "$(dirname "$0")/.."
H=${BENCH_HIDDEN:-256} L=${BENCH_LAYERS:-4} NH=${BENCH_HEADS:-4} KV=${BENCH_KV:-2}
I=${BENCH_INTER:-768} V=${BENCH_VOCAB:-4096} B=${BENCH_BATCH:-8} S=${BENCH_SEQ:-256} N=${BENCH_STEPS:-8}
PY=/usr/bin/python3
TMP=$(mktemp -d "${TMPDIR:-/tmp}/icl-bench-train.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# A byte-level tokenizer of exactly V ids for the from-scratch model: its
# vocabulary is what matters here, not its merges.
$PY bench/bytelevel_tok.py "$V" >"$TMP/tok.json"
# B * (N + 2) rows of S random ids, all trained (a line starting with TAB).
awk -v V="$V" -v S="$S" -v R=$((B * (N + 2))) 'BEGIN { srand(1); for (r = 0; r < R; r++) {
	s = "\t"; for (i = 0; i < S; i++) s = s (i ? " " : "") int(rand() * V); print s } }' >"$TMP/data.tok"

rss() { sed -n 's/.*Maximum resident set size (kbytes): //p' "$1"; }
median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

if [ "${BENCH_SCRATCH:-1}" != 0 ]; then
echo "bench-train: Llama hidden $H layers $L heads $NH kv $KV intermediate $I vocab $V; batch $B x seq $S; $N steps"
echo "icl: $(bin/icl-train --version | tail -1); torch: $($PY -c 'import torch; print(torch.__version__)' 2>/dev/null)"
printf '%-8s %12s %12s %12s %8s %8s %10s %10s %10s\n' threads icl_tok/s torch_tok/s torch_pass icl/torch icl/best icl_RSS_MB torch_MB torchp_MB
for T in 1 2; do
	/usr/bin/time -v -o "$TMP/icl.time" bin/icl-train -q --arch llama --hidden-size "$H" --num-hidden-layers "$L" \
		--num-attention-heads "$NH" --num-key-value-heads "$KV" --intermediate-size "$I" -t "$TMP/tok.json" \
		-o "$TMP/out" --batch-size "$B" --seq-len "$S" --max-steps "$N" --no-shuffle --lr 1e-3 \
		--weight-decay 0.1 --beta2 0.95 --threads "$T" "$TMP/data.tok" >"$TMP/icl.jsonl"
	icl=$(tail -n +3 "$TMP/icl.jsonl" | sed 's/.*"tokens_per_s": \([0-9.]*\).*/\1/' | median)
	/usr/bin/time -v -o "$TMP/t.time" $PY bench/torch_train.py --hidden "$H" --layers "$L" --heads "$NH" --kv "$KV" \
		--inter "$I" --vocab "$V" --batch "$B" --seq "$S" --steps "$N" --threads "$T" >"$TMP/t.out"
	tt=$(awk '{ print $3 }' "$TMP/t.out")
	OMP_WAIT_POLICY=passive /usr/bin/time -v -o "$TMP/tp.time" $PY bench/torch_train.py --hidden "$H" --layers "$L" \
		--heads "$NH" --kv "$KV" --inter "$I" --vocab "$V" --batch "$B" --seq "$S" --steps "$N" --threads "$T" >"$TMP/tp.out"
	tp=$(awk '{ print $3 }' "$TMP/tp.out")
	awk -v T="$T" -v a="$icl" -v b="$tt" -v c="$tp" -v r1="$(rss "$TMP/icl.time")" -v r2="$(rss "$TMP/t.time")" \
		-v r3="$(rss "$TMP/tp.time")" 'BEGIN { best = b > c ? b : c;
		printf "%-8s %12.1f %12.1f %12.1f %7.2fx %7.2fx %10.1f %10.1f %10.1f\n", T, a, b, c, a / b, a / best, r1 / 1024, r2 / 1024, r3 / 1024 }'
	rm -rf "$TMP/out"
done
echo "(torch_tok/s: PyTorch as installed, OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}; torch_pass: OMP_WAIT_POLICY=passive; icl/best: against the faster of the two)"
fi

# The real model (issue 13): SmolLM2-135M-Instruct, batch BENCH_REAL_BATCH (8)
# x seq BENCH_REAL_SEQ (256) packed rows of real Alpaca data (the chat template
# applied, all ids targets), BENCH_REAL_STEPS (5; median after 2 warm-up
# steps), 1 and 2 threads: icl full fine-tune and LoRA (r 16, all-linear) on
# the float32 folder icl-convert writes from the GGUF, QLoRA on the Q4_1 GGUF
# itself (without and with --gradient-checkpointing), against PyTorch +
# transformers + PEFT LoRA on the same folder and rows (bench/peft_train.py,
# bench-deps' venv).  Skipped when the GGUF is missing (make deps).
# BENCH_SCRATCH=0 skips the from-scratch table above; BENCH_REAL_THREADS
# ("1 2") the thread counts of this one.
GGUF=${ICL_SMOLLM2_GGUF:-${ICL_CACHE:-$HOME/.cache/icl}/SmolLM2-135M-Instruct.Q4_1.gguf}
VPY=bench/out/venv/bin/python
if [ "${BENCH_REAL:-1}" = 0 ] || [ ! -r "$GGUF" ]; then
	echo "bench-train: real model skipped (${GGUF} missing or BENCH_REAL=0)"
	exit 0
fi
if ! $VPY -c 'import peft, transformers' 2>/dev/null; then
	echo "bench-train: real model skipped: $VPY lacks transformers/peft (make bench-deps)"
	exit 0
fi
RB=${BENCH_REAL_BATCH:-8} RS=${BENCH_REAL_SEQ:-256} RN=${BENCH_REAL_STEPS:-5}
bin/icl-convert "$GGUF" "$TMP/smol" >/dev/null
bin/icl-fmt --chat-template "$GGUF" examples/data/alpaca_en_demo.json >"$TMP/alpaca.rec"
bin/icl-tok encode -t "$GGUF" "$TMP/alpaca.rec" >"$TMP/alpaca.tok"
# every id of every example in order, cut into rows of RS ids
grep -v '^#' "$TMP/alpaca.tok" | tr -s '\t \n' '\n\n\n' | grep -v '^$' |
	awk -v S="$RS" -v R=$((RB * RN)) '{ row = row (n ? " " : "") $1; if (++n == S) { print "\t" row; row = ""; n = 0; if (++r == R) exit } }' \
	>"$TMP/real.tok"
test "$(wc -l <"$TMP/real.tok")" -eq $((RB * RN)) || { echo "bench-train: too little Alpaca data for $((RB * RN)) rows" >&2; exit 1; }

echo
echo "bench-train: SmolLM2-135M-Instruct; batch $RB x seq $RS packed Alpaca; $RN steps; lr 1e-4"
printf '%-8s %-34s %10s %10s %10s\n' threads run tokens/s vs_peft RSS_MB
for T in ${BENCH_REAL_THREADS:-1 2}; do
	run() { # NAME CMD...: icl-train, median tokens/s after 2 warm-up steps
		name=$1; shift
		/usr/bin/time -v -o "$TMP/r.time" "$@" -q -o "$TMP/out" --batch-size "$RB" --seq-len "$RS" \
			--max-steps "$RN" --no-shuffle --lr 1e-4 --threads "$T" "$TMP/real.tok" >"$TMP/r.jsonl" || {
			echo "$name: failed" >&2; rm -rf "$TMP/out"; return 0; }
		rm -rf "$TMP/out"
		echo "$name $(tail -n +3 "$TMP/r.jsonl" | sed 's/.*"tokens_per_s": \([0-9.]*\).*/\1/' | median) $(rss "$TMP/r.time")" >>"$TMP/rows.$T"
	}
	/usr/bin/time -v -o "$TMP/p.time" $VPY bench/peft_train.py --model "$TMP/smol" --data "$TMP/real.tok" \
		--lora-r 16 --batch "$RB" --steps "$RN" --threads "$T" >"$TMP/p.out"
	peft=$(awk '{ print $3 }' "$TMP/p.out")
	: >"$TMP/rows.$T"
	run "icl full fine-tune (float32)" bin/icl-train -m "$TMP/smol"
	run "icl LoRA r16 all-linear (float32)" bin/icl-train -m "$TMP/smol" --lora-r 16 --lora-alpha 32 --lora-targets all-linear
	run "icl QLoRA r16 (Q4_1 GGUF)" bin/icl-train -m "$GGUF" --lora-r 16 --lora-alpha 32 --lora-targets all-linear
	run "icl QLoRA r16 +checkpointing" bin/icl-train -m "$GGUF" --lora-r 16 --lora-alpha 32 --lora-targets all-linear \
		--gradient-checkpointing
	echo "peft LoRA r16 all-linear (torch) $peft $(rss "$TMP/p.time")" >>"$TMP/rows.$T"
	awk -v T="$T" -v p="$peft" '{ r = $(NF - 1); m = $NF; $NF = ""; $(NF - 1) = ""; sub(/ +$/, "");
		printf "%-8s %-34s %10.1f %9.2fx %10.1f\n", T, $0, r, r / p, m / 1024 }' "$TMP/rows.$T"
done

# --dtype bf16 (issue 14): the full fine-tune of the same model in float32
# and in bf16 (products in bfloat16 with float32 sums, float32 master
# weights) on the same BENCH_BF16_STEPS (50) steps of batch RB x RS packed
# Alpaca rows, BENCH_BF16_THREADS (2): median tokens/s after 2 warm-up
# steps, their ratio (goal >= 1.6x), and how far bf16's loss curve is from
# float32's (largest and mean |relative difference| per step; goal < 1%).
BN=${BENCH_BF16_STEPS:-50}
grep -v '^#' "$TMP/alpaca.tok" | tr -s '\t \n' '\n\n\n' | grep -v '^$' |
	awk -v S="$RS" -v R=$((RB * BN)) '{ row = row (n ? " " : "") $1; if (++n == S) { print "\t" row; row = ""; n = 0; if (++r == R) exit } }' \
	>"$TMP/bf16.tok"
echo
echo "bench-train: --dtype bf16 against float32, SmolLM2-135M-Instruct full fine-tune; batch $RB x seq $RS packed Alpaca" \
	"($(wc -l <"$TMP/bf16.tok") rows, repeated as needed); $BN steps; lr 1e-4"
printf '%-8s %12s %12s %8s %14s %14s\n' threads f32_tok/s bf16_tok/s bf16/f32 max_loss_diff mean_loss_diff
for T in ${BENCH_BF16_THREADS:-2}; do
	for D in float32 bf16; do
		bin/icl-train -m "$TMP/smol" -o "$TMP/out" --dtype "$D" --batch-size "$RB" --seq-len "$RS" --no-progress \
			--max-steps "$BN" --no-shuffle --lr 1e-4 --threads "$T" "$TMP/bf16.tok" >"$TMP/$D.jsonl" 2>"$TMP/$D.err"
		rm -rf "$TMP/out"
	done
	echo "# $(grep -o 'dtype bfloat16 ([a-z0-9]*)' "$TMP/bf16.err")"
	f=$(tail -n +3 "$TMP/float32.jsonl" | sed 's/.*"tokens_per_s": \([0-9.]*\).*/\1/' | median)
	b=$(tail -n +3 "$TMP/bf16.jsonl" | sed 's/.*"tokens_per_s": \([0-9.]*\).*/\1/' | median)
	sed 's/.*"loss": \([-0-9.e+]*\).*/\1/' "$TMP/float32.jsonl" >"$TMP/lf"
	sed 's/.*"loss": \([-0-9.e+]*\).*/\1/' "$TMP/bf16.jsonl" >"$TMP/lb"
	paste "$TMP/lf" "$TMP/lb" | awk -v T="$T" -v f="$f" -v b="$b" '{ d = ($2 - $1) / $1; if (d < 0) d = -d;
		if (d > mx) mx = d; s += d } END { printf "%-8s %12.1f %12.1f %7.2fx %13.3f%% %13.3f%%\n", T, f, b, b / f, 100 * mx, 100 * s / NR }'
done
