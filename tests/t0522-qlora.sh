#!/bin/sh
# icl-train --lora-r on a quantized GGUF base (QLoRA): the matrices stay in
# their blocks (the note says which), the run equals LoRA on the dequantized
# model (--dequantize) to float32 rounding, and resume is bit-exact.
# (Kernels: tests/unit/test_qlinear.c; model parity, fused products and
# fallbacks: tests/unit/test_qlora.c; the real model: t1103.)
. "$(dirname "$0")/lib.sh"
Q="$DATA/gguf/llama-tiny.q4_1.gguf" # Q4_1 blocks, Q8_0 token_embd and output
# rel A B TOL: |A - B| <= TOL * |B|
rel() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; m = b < 0 ? -b : b; exit !(d <= t * m) }'; }
losses() { python3 -c 'import json,sys
for l in open(sys.argv[1]): d = json.loads(l); print(d["loss"], d["grad_norm"])' "$1"; }

awk 'BEGIN { srand(11); for (e = 0; e < 24; e++) { n = 4 + int(rand() * 10); np = 1 + int(rand() * (n - 2));
	s = ""; for (i = 0; i < n; i++) s = s (i == 0 ? "" : i == np ? "\t" : " ") int(rand() * 96); print s } }' >rand.tok

ARGS="-m $Q --lora-r 4 --lora-targets all-linear --batch-size 3 --grad-accum 2 --epochs 3 --lr 1e-2 --schedule cosine --warmup-steps 2 --save-every 5 --threads 2"

test_expect_success '--help and the man page name --dequantize' '
	icl-train --help >help && test_grep "dequantize" help
'

test_expect_code 2 '--dequantize without LoRA is a usage error' 'icl-train -m "$Q" -o out --dequantize rand.tok'

test_expect_success 'a quantized GGUF base keeps its blocks and says so' '
	icl-train $ARGS -o q rand.tok >m.q 2>err.q &&
	test $(wc -l <m.q) -eq 12 &&
	test_grep "QLoRA: 10 matrices in quantized blocks (Q4_1 x 8, Q8_0 x 2)" err.q &&
	test -s q/adapter_model.safetensors && ! test -e q/model.safetensors
'

test_expect_success '--dequantize: float32 LoRA, the same losses and gradient norms to float32 rounding' '
	icl-train $ARGS --dequantize -o f rand.tok >m.f 2>err.f &&
	! grep -q QLoRA err.f &&
	losses m.q >a && losses m.f >b && paste a b >both &&
	test $(wc -l <both) -eq 12 &&
	while read lq gq lf gf; do
		rel $lq $lf 1e-5 && rel $gq $gf 1e-4 || { echo "differs: $lq $gq vs $lf $gf"; exit 1; }
	done <both
'

test_expect_success 'QLoRA resume: 5 steps + resume == uninterrupted run, bit for bit' '
	mkdir part && cp -r q/checkpoint-5 part/ &&
	icl-train -q $ARGS -o part --resume rand.tok >m.part &&
	cmp q/adapter_model.safetensors part/adapter_model.safetensors &&
	cmp q/checkpoint-12/optimizer.safetensors part/checkpoint-12/optimizer.safetensors
'

test_done
