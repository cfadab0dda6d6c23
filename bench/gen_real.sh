#!/bin/sh
# make bench-gen_real: icl-gen's decoding of SmolLM2-135M-Instruct from its
# Q4_1 GGUF (bench/gen_gguf.c: the model loaded as icl-gen loads it) against
# llama.cpp (llama-cpp-python, bench-deps; bench/llamacpp_gen.py) on the same
# file, prompt ids (real Alpaca text in the chat template) and thread count,
# in the same run: greedy decode tokens/s at batch 1 and 8 (prompt 16 ids,
# NEW (128) new tokens; llama.cpp decodes one sequence per call, so its
# batch-8 rate is its batch-1 rate) and prefill tokens/s of a 512-id prompt,
# 1 and 2 threads; then decoding with a LoRA adapter applied unmerged
# (below).  Needs the GGUF (make deps) and an idle machine.
set -eu
cd "$(dirname "$0")/.."
GGUF=${ICL_SMOLLM2_GGUF:-${ICL_CACHE:-$HOME/.cache/icl}/SmolLM2-135M-Instruct.Q4_1.gguf}
VPY=bench/out/venv/bin/python
N=${NEW:-128}
[ -r "$GGUF" ] || { echo "bench-gen_real: $GGUF missing (make deps)"; exit 1; }
$VPY -c 'import llama_cpp' 2>/dev/null || { echo "bench-gen_real: $VPY lacks llama_cpp (make bench-deps)"; exit 1; }
make -s build/bench/gen_gguf
TMP=$(mktemp -d "${TMPDIR:-/tmp}/icl-bench-gen.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
bin/icl-fmt --chat-template "$GGUF" examples/data/alpaca_en_demo.json | head -200 |
	bin/icl-tok encode -t "$GGUF" | grep -v '^#' | tr '\t' ' ' >"$TMP/ids"
echo "# $(basename "$GGUF"); load before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'; }
field() { sed -n "s/.* $1 \([0-9.]*\) tokens.*/\1/p"; }
for T in 1 2; do
	l=$($VPY bench/llamacpp_gen.py "$GGUF" "$T" "$N" 16 "$TMP/ids")
	ld=$(echo "$l" | field decode)
	for B in 1 8; do
		i=$(build/bench/gen_gguf "$GGUF" "$T" "$B" "$N" 16 "$TMP/ids")
		id=$(echo "$i" | field decode)
		echo "threads $T batch $B decode: icl $id tokens/s, llama.cpp $ld tokens/s (batch 1), ratio $(ratio "$id" "$ld")"
	done
	l=$($VPY bench/llamacpp_gen.py "$GGUF" "$T" 2 512 "$TMP/ids")
	i=$(build/bench/gen_gguf "$GGUF" "$T" 1 2 512 "$TMP/ids")
	lp=$(echo "$l" | field prefill) ip=$(echo "$i" | field prefill)
	echo "threads $T prefill 512 ids: icl $ip tokens/s, llama.cpp $lp tokens/s, ratio $(ratio "$ip" "$lp")"
done
# Decoding with an adapter applied unmerged (icl-gen -m GGUF --adapter DIR
# over the Q4_1 blocks; llama.cpp's --lora with the same adapter as a LoRA
# GGUF): LoRA r 16 all-linear, from one QLoRA step (its values do not change
# the speed), against the same decoding without it (measured again right
# after, for the ratio).
# BENCH_GEN_ADAPTER=0 skips it.
if [ "${BENCH_GEN_ADAPTER:-1}" != 0 ]; then
	head -8 "$TMP/ids" | awk '{ print "\t" $0 }' >"$TMP/train.tok"
	bin/icl-train -q -m "$GGUF" -o "$TMP/ad" --lora-r 16 --lora-alpha 32 --lora-targets all-linear --batch-size 2 \
		--seq-len 512 --max-steps 1 --threads "$(nproc)" "$TMP/train.tok" >/dev/null 2>"$TMP/train.err" ||
		{ cat "$TMP/train.err" >&2; exit 1; }
	bin/icl-convert --base "$GGUF" "$TMP/ad" "$TMP/lora.gguf" >/dev/null
	for T in 1 2; do
		l=$($VPY bench/llamacpp_gen.py "$GGUF" "$T" "$N" 16 "$TMP/ids" "$TMP/lora.gguf")
		ld=$(echo "$l" | field decode)
		for B in 1 8; do
			# ":1": the scale, so that a ':' in $TMP is not read as one
			i=$(build/bench/gen_gguf "$GGUF" "$T" "$B" "$N" 16 "$TMP/ids" --adapter "$TMP/ad:1")
			id=$(echo "$i" | field decode)
			b=$(build/bench/gen_gguf "$GGUF" "$T" "$B" "$N" 16 "$TMP/ids" | field decode)
			echo "threads $T batch $B decode with the adapter: icl $id tokens/s, llama.cpp --lora $ld tokens/s" \
				"(batch 1), ratio $(ratio "$id" "$ld"); icl $(ratio "$id" "$b") of its rate without it"
		done
	done
fi
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
