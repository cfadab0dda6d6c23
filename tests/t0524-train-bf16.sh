#!/bin/sh
# icl-train --dtype bf16: the matrix products in bfloat16 (vdpbf16ps or the
# portable path) with float32 master weights.  The loss curve follows
# float32's within 1% step by step (full fine-tune of the tiny Llama and
# GPT-2 fixtures, LoRA, QLoRA), differs from it (the products really are
# bf16), QLoRA's quantized matrices are dequantized straight to bf16 with
# the results of --dequantize --dtype bf16 bit for bit (with and without
# gradient checkpointing), resume is bit-exact (QLoRA too), and a resume
# across dtypes is refused.  (Kernels and gradients against float32:
# tests/unit/test_bf16_train.c.)
. "$(dirname "$0")/lib.sh"
LLAMA="$DATA/model/llama-tiny/model"
GPT2="$DATA/model/gpt2-tiny/model"
Q="$DATA/gguf/llama-tiny.q4_1.gguf"
losses() { python3 -c 'import json,sys
for l in open(sys.argv[1]): print(json.loads(l)["loss"])' "$1"; }
# within A B TOL: every line's loss of A within TOL (relative) of B's, and
# at least one differs; prints the largest relative difference
within() {
	losses "$1" >la && losses "$2" >lb && test $(wc -l <la) -eq $(wc -l <lb) && test -s la &&
	paste la lb | awk -v t="$3" '{ d = $1 - $2; if (d < 0) d = -d; r = d / ($2 < 0 ? -$2 : $2);
		if (r > mx) mx = r; if (d > 0) nd++ } END { print "# max relative loss difference " mx " over " NR " steps";
		exit !(mx <= t && nd > 0) }'
}

awk 'BEGIN { srand(7); for (e = 0; e < 24; e++) { n = 4 + int(rand() * 10); np = 1 + int(rand() * (n - 2));
	s = ""; for (i = 0; i < n; i++) s = s (i == 0 ? "" : i == np ? "\t" : " ") int(rand() * 96); print s } }' >rand.tok
awk 'BEGIN { srand(9); for (e = 0; e < 24; e++) { n = 4 + int(rand() * 10); np = 1 + int(rand() * (n - 2));
	s = ""; for (i = 0; i < n; i++) s = s (i == 0 ? "" : i == np ? "\t" : " ") int(rand() * 64); print s } }' >g.tok

A="--batch-size 3 --max-steps 30 --lr 3e-3 --threads 2"

test_expect_success '--help and the man page name --dtype' '
	icl-train --help >help && test_grep "dtype TYPE" help &&
	grep -q "dtype" "$TESTS_DIR/../man/man1/icl-train.1"
'

test_expect_code 2 'a bad --dtype is a usage error' 'icl-train -m "$LLAMA" -o out --dtype fp8 rand.tok'

test_expect_success 'llama: 30 steps of bf16 within 1% of float32, step by step' '
	icl-train -m "$LLAMA" $A -o f32 rand.tok >m.f32 &&
	icl-train -m "$LLAMA" $A --dtype bf16 -o b16 rand.tok >m.b16 2>err &&
	test_grep "dtype bfloat16 (" err &&
	within m.b16 m.f32 0.01 &&
	test -s b16/model.safetensors
'

test_expect_success 'gpt2 (Conv1D weights): 30 steps of bf16 within 1% of float32' '
	icl-train -m "$GPT2" $A -o gf32 g.tok >g.f32 &&
	icl-train -m "$GPT2" $A --dtype bfloat16 -o gb16 g.tok >g.b16 &&
	within g.b16 g.f32 0.01
'

test_expect_success 'LoRA: bf16 within 1% of float32; the base stays as it was' '
	icl-train -m "$LLAMA" $A --lora-r 4 --lora-targets all-linear --lr 1e-2 -o lf32 rand.tok >l.f32 &&
	icl-train -m "$LLAMA" $A --lora-r 4 --lora-targets all-linear --lr 1e-2 --dtype bf16 -o lb16 rand.tok >l.b16 &&
	within l.b16 l.f32 0.01 &&
	test -s lb16/adapter_model.safetensors && ! test -e lb16/model.safetensors
'

strip() { sed "s/, \"tokens_per_s\": [0-9.]*//" "$1"; }
QA="-m $Q $A --lora-r 4 --lora-targets all-linear --dtype bf16"
test_expect_success 'QLoRA bf16: the blocks dequantized straight to bf16 give --dequantize --dtype bf16 bit for bit' '
	icl-train -m "$Q" $A --lora-r 4 --lora-targets all-linear -o qf32 rand.tok >q.f32 &&
	icl-train $QA -o qb16 rand.tok >q.b16 2>err &&
	test_grep "QLoRA: 10 matrices in quantized blocks" err &&
	test_grep "the 10 quantized matrices are dequantized 64 rows or columns at a time straight to bfloat16" err &&
	icl-train $QA --dequantize -o qd16 rand.tok >q.d16 2>errd &&
	! grep -q "quantized matrices are" errd &&
	strip q.b16 >a && strip q.d16 >b && test_cmp a b && test $(wc -l <a) -eq 30 &&
	cmp qb16/adapter_model.safetensors qd16/adapter_model.safetensors &&
	within q.b16 q.f32 0.01
'

test_expect_success 'QLoRA bf16 with --gradient-checkpointing: the same bits' '
	icl-train $QA --gradient-checkpointing -o qc16 rand.tok >q.c16 &&
	strip q.c16 >c && test_cmp a c &&
	cmp qb16/adapter_model.safetensors qc16/adapter_model.safetensors
'

QR="$QA --max-steps 12 --save-every 5"
test_expect_success 'QLoRA bf16 resume: 5 steps + resume == uninterrupted run, bit for bit' '
	icl-train -q $QR -o qfull rand.tok >m.qfull &&
	mkdir qpart && cp -r qfull/checkpoint-5 qpart/ &&
	icl-train -q $QR -o qpart --resume rand.tok >m.qpart &&
	cmp qfull/adapter_model.safetensors qpart/adapter_model.safetensors &&
	cmp qfull/checkpoint-12/optimizer.safetensors qpart/checkpoint-12/optimizer.safetensors &&
	strip m.qfull >a && strip m.qpart >b && test_cmp a b
'

R="-m $LLAMA --batch-size 3 --grad-accum 2 --epochs 3 --lr 1e-2 --weight-decay 0.1 --schedule cosine --save-every 5 --threads 2 --dtype bf16"
test_expect_success 'resume with --dtype bf16: 5 steps + resume == uninterrupted run, bit for bit' '
	icl-train -q $R -o full rand.tok >m.full &&
	test $(wc -l <m.full) -eq 12 &&
	mkdir part && cp -r full/checkpoint-5 part/ &&
	icl-train -q $R -o part --resume rand.tok >m.part &&
	cmp full/model.safetensors part/model.safetensors &&
	cmp full/checkpoint-12/optimizer.safetensors part/checkpoint-12/optimizer.safetensors &&
	sed "s/, \"tokens_per_s\": [0-9.]*//" m.full >a &&
	sed "s/, \"tokens_per_s\": [0-9.]*//" m.part >b &&
	test_cmp a b
'

test_expect_success 'a resume must keep the dtype' '
	test_must_fail icl-train -q $R --dtype float32 -o part --resume rand.tok 2>err &&
	test_grep "cannot resume: --dtype is float32 here but bfloat16 in the checkpoint" err ||
	{ cat err; false; }
'

test_done
