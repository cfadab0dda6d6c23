#!/bin/sh
# --dtype bf16 (icl_model_set_bf16; lib/bf16.c): the options of icl-gen and
# icl-eval, the loss of the tiny fixtures and of the real model within 1% of
# transformers' float32 references (the products' operands rounded to 8
# significant bits move a loss by much less).  Exactness against transformers
# on the same rounded operands is test_bf16's.
. "$(dirname "$0")/lib.sh"
M="$DATA/model"
G="$DATA/gen"
field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1" <"$2"; }
# rel A B TOL: |A - B| <= TOL * |B|
rel() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; m = b < 0 ? -b : b; exit !(d <= t * m) }'; }

test_expect_success '--dtype takes f32 or bf16 only' '
	echo 1 >in &&
	test_must_fail icl-gen -m $M/llama-tiny/model --ids --dtype f16 <in 2>err &&
	test_grep "dtype" err &&
	test_must_fail icl-eval --dtype bf16 in 2>err &&
	test_grep "needs -m" err
'

for m in llama-tiny gpt2-tiny; do
	test_expect_success "$m: icl-eval --dtype bf16 loss within 1% of transformers' float32 loss, f32 unchanged" "
		icl-eval -m $M/$m/model --dtype bf16 $G/$m.tok >b &&
		icl-eval -m $M/$m/model --dtype f32 $G/$m.tok >f &&
		icl-eval -m $M/$m/model $G/$m.tok >d &&
		test_cmp d f &&
		read want n <$G/$m.loss &&
		test \$(field tokens b) = \$n &&
		rel \$(field loss b) \$want 0.01 &&
		! rel \$(field loss b) \$want 1e-6
	"
	test_expect_success "$m: icl-gen --dtype bf16 decodes (same ids at batch 1 and 4, 1 and 2 threads)" "
		icl-gen -m $M/$m/model --ids --dtype bf16 -n 8 -b 1 --threads 1 <$G/$m.greedy.in >o1 &&
		icl-gen -m $M/$m/model --ids --dtype bf16 -n 8 -b 4 --threads 2 <$G/$m.greedy.in >o4 &&
		test_cmp o1 o4 &&
		test \$(wc -l <o1) = \$(wc -l <$G/$m.greedy.in)
	"
done

GGUF="${ICL_SMOLLM2_GGUF:-}"
if [ -z "$GGUF" ] || [ ! -r "$GGUF" ]; then
	test_skip 'SmolLM2-135M-Instruct: bf16 loss' 'ICL_SMOLLM2_GGUF missing: make deps fetches it'
else
	test_expect_success 'SmolLM2-135M-Instruct: bf16 masked loss of 4 Alpaca examples within 1% of float32' '
		head -4 $DATA/smollm2/alpaca16.tok >four.tok &&
		icl-eval -m "$GGUF" four.tok >f &&
		icl-eval -m "$GGUF" --dtype bf16 four.tok >b &&
		rel $(field loss b) $(field loss f) 0.01 &&
		! rel $(field loss b) $(field loss f) 1e-6
	'
fi

test_done
