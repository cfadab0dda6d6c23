#!/bin/sh
# Do icl's LoRA adapters give llama.cpp the ids icl-gen gives?  (issue 13;
# needs `make bench-deps`' llama-cpp-python, not make check.)
#
# A short LoRA (r 16, alpha 32, all-linear) is trained with icl-train on
# SmolLM2-135M-Instruct (the Q4_1 GGUF dequantized to float32) and used two
# ways, each against icl-gen on the 4 chat prompts of
# tests/data/smollm2/greedy.in (greedy, 40 tokens or up to <|im_end|>):
#   1. the adapter as a llama.cpp LoRA GGUF (icl-convert ADAPTER LORA.gguf)
#      over an F32 export of the base: llama_cpp.Llama(lora_path=...) against
#      icl-gen -m BASE --adapter ADAPTER;
#   2. the adapter merged into the base and exported as an F32 GGUF
#      (icl-convert --adapter ADAPTER BASE MERGED.gguf): llama.cpp against
#      icl-gen -m MERGED.gguf.
# It also shows that the adapter changes the base's greedy ids (else the
# comparisons would prove nothing).  F32 everywhere, so the ids agree up to
# near-ties of two logits (llama.cpp sums in another order; its KV cache is
# made F32 by gguf_llamacpp.py).
#
# usage: bench/lora_llamacpp.sh [WORKDIR]    (default: a temporary folder)
# exit status 1 when any id differs (see the near-tie report it prints then)
# env: ICL_SMOLLM2_GGUF (default ~/.cache/icl/SmolLM2-135M-Instruct.Q4_1.gguf),
#      PY (default /work/ref/venv/bin/python, with llama-cpp-python 0.3.x)
set -e
cd "$(dirname "$0")/.."
TOP=$(pwd)
BIN="$TOP/bin"
GGUF=${ICL_SMOLLM2_GGUF:-$HOME/.cache/icl/SmolLM2-135M-Instruct.Q4_1.gguf}
PY=${PY:-/work/ref/venv/bin/python}
S="$TOP/tests/data/smollm2"
W=${1:-$(mktemp -d)}
mkdir -p "$W"
echo "# work folder: $W"
test -r "$GGUF" || { echo "no $GGUF (make deps fetches it)" >&2; exit 1; }

set -x
"$BIN/icl-convert" "$GGUF" "$W/base"
"$BIN/icl-convert" --type F32 --like "$GGUF" "$W/base" "$W/base.f32.gguf"
"$BIN/icl-train" -q -m "$W/base" -o "$W/lora" --lora-r 16 --lora-alpha 32 --lora-targets all-linear \
	--batch-size 2 --no-shuffle --max-steps 16 --schedule constant --lr 3e-3 --threads 2 "$S/alpaca16.tok" >"$W/train.log"
"$BIN/icl-convert" --base "$W/base.f32.gguf" "$W/lora" "$W/lora.gguf"
"$BIN/icl-convert" --adapter "$W/lora" --type F32 --like "$GGUF" "$W/base" "$W/merged.f32.gguf"
"$BIN/icl-gen" -m "$W/base.f32.gguf" --ids --greedy -n 40 --threads 2 <"$S/greedy.in" >"$W/base.ids"
"$BIN/icl-gen" -m "$W/base.f32.gguf" --adapter "$W/lora" --ids --greedy -n 40 --threads 2 <"$S/greedy.in" >"$W/lora.ids"
"$BIN/icl-gen" -m "$W/merged.f32.gguf" --ids --greedy -n 40 --threads 2 <"$S/greedy.in" >"$W/merged.ids"
set +x

echo "# training loss, first and last step:"
sed -n '1p;$p' "$W/train.log"
echo "# the adapter changes icl-gen's greedy ids (prompt: base ids identical to the adapted ones):"
paste "$W/base.ids" "$W/lora.ids" | awk -F'\t' '{ n = split($2, a, " "); m = split($4, b, " "); k = 0;
	while (k < n && k < m && a[k+1] == b[k+1]) k++; printf "prompt %d: %d of %d\n", NR - 1, k, m }'
echo "# icl-gen -m BASE --adapter DIR against icl-gen -m MERGED.gguf:"
if cmp -s "$W/lora.ids" "$W/merged.ids"; then echo "identical"; else echo "DIFFERENT"; fi
rc=0
echo "# 1. llama.cpp, F32 base + --lora lora.gguf, against icl-gen -m BASE --adapter DIR:"
"$PY" bench/gguf_llamacpp.py --lora "$W/lora.gguf" "$W/base.f32.gguf" "$S/greedy.in" "$W/lora.ids" 40 >"$W/cmp1" || rc=1
cat "$W/cmp1"
echo "# 2. llama.cpp, merged F32 export, against icl-gen -m MERGED.gguf:"
"$PY" bench/gguf_llamacpp.py "$W/merged.f32.gguf" "$S/greedy.in" "$W/merged.ids" 40 >"$W/cmp2" || rc=1
cat "$W/cmp2"
# Where they differ: transformers' (float32, the merged folder) two best logits there
diffs=$(sed -n 's/^prompt \([0-9]*\): .*first difference at \([0-9]*\): icl [0-9]*, llama.cpp \([0-9]*\).*/\1:\2:\3/p' \
	"$W/cmp1" "$W/cmp2" | sort -u)
if [ -n "$diffs" ]; then
	echo "# where the ids differ, transformers 4.46 on the merged model (float32):"
	"$BIN/icl-convert" --adapter "$W/lora" "$W/base" "$W/merged"
	"$PY" bench/lora_hf_gap.py "$W/merged" "$S/greedy.in" "$W/lora.ids" $diffs
fi
exit $rc
