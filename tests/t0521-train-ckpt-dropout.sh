#!/bin/sh
# icl-train --gradient-checkpointing (the same outputs, byte for byte) and
# --lora-dropout (PEFT's lora_dropout: recorded in adapter_config.json,
# exact resume).  Memory and the numerics: tests/unit/test_ckpt.c and
# test_lora_dropout.c.
. "$(dirname "$0")/lib.sh"
LLAMA="$DATA/model/llama-tiny/model"
GPT2="$DATA/model/gpt2-tiny/model"

awk 'BEGIN { srand(11); for (e = 0; e < 24; e++) { n = 4 + int(rand() * 14); np = 1 + int(rand() * (n - 2));
	s = ""; for (i = 0; i < n; i++) s = s (i == 0 ? "" : i == np ? "\t" : " ") int(rand() * 96); print s } }' >rand.tok

# metrics lines without tokens_per_s (a timing)
metrics() { sed "s/, \"tokens_per_s\": [0-9.]*//" "$1"; }

test_expect_success '--help lists --gradient-checkpointing' '
	icl-train --help >help &&
	test_grep "^      --gradient-checkpointing" help
'

FULL="-q -m $LLAMA --batch-size 3 --grad-accum 2 --packing --seq-len 24 --epochs 2 --lr 1e-2 --weight-decay 0.1 --save-every 3 --threads 2"

test_expect_success 'full fine-tune: the same metrics, model and optimizer state with and without it' '
	icl-train $FULL -o fa rand.tok >m.a &&
	icl-train $FULL --gradient-checkpointing -o fb rand.tok >m.b 2>err.b &&
	metrics m.a >a && metrics m.b >b && test_cmp a b &&
	cmp fa/model.safetensors fb/model.safetensors &&
	cmp fa/checkpoint-3/optimizer.safetensors fb/checkpoint-3/optimizer.safetensors &&
	cmp fa/checkpoint-3/model.safetensors fb/checkpoint-3/model.safetensors &&
	python3 -c "import json
a=json.load(open(\"fa/checkpoint-3/trainer_state.json\"))[\"icl\"]; b=json.load(open(\"fb/checkpoint-3/trainer_state.json\"))[\"icl\"]
assert a[\"gradient_checkpointing\"] is False and b[\"gradient_checkpointing\"] is True, (a, b)"
'

test_expect_success 'GPT-2 (Conv1D, biases): the same outputs with and without it' '
	icl-train -q -m "$GPT2" --batch-size 4 --max-steps 4 --lr 1e-2 --threads 2 -o g1 rand.tok >m.g1 &&
	icl-train -q -m "$GPT2" --batch-size 4 --max-steps 4 --lr 1e-2 --threads 2 --gradient-checkpointing -o g2 rand.tok >m.g2 &&
	metrics m.g1 >a && metrics m.g2 >b && test_cmp a b &&
	cmp g1/model.safetensors g2/model.safetensors
'

LORA="-q -m $LLAMA --lora-r 4 --lora-alpha 8 --lora-targets all-linear --lora-dropout 0.1 --batch-size 3 --grad-accum 2 --epochs 3 --lr 1e-2 --save-every 5 --threads 2"

test_expect_success 'LoRA with dropout: the same adapters with and without it; the summary says so' '
	icl-train $LORA -o la rand.tok >m.la &&
	icl-train $LORA --gradient-checkpointing -o lb rand.tok >m.lb &&
	metrics m.la >a && metrics m.lb >b && test_cmp a b &&
	cmp la/adapter_model.safetensors lb/adapter_model.safetensors &&
	cmp la/checkpoint-5/optimizer.safetensors lb/checkpoint-5/optimizer.safetensors &&
	icl-train $(echo "$LORA" | sed "s/^-q //") --max-steps 1 --gradient-checkpointing -o lc rand.tok 2>err >/dev/null &&
	test_grep "gradient_checkpointing 1" err &&
	test_grep "lora_dropout 0.1 " err
'

test_expect_success 'adapter_config.json records lora_dropout as PEFT does' '
	python3 -c "import json
a=json.load(open(\"la/adapter_config.json\")); c=json.load(open(\"la/checkpoint-5/adapter_config.json\"))
assert a[\"lora_dropout\"]==0.1 and c[\"lora_dropout\"]==0.1, (a[\"lora_dropout\"], c[\"lora_dropout\"])" &&
	test_grep "\"lora_dropout\": 0.1,\$" la/adapter_config.json
'

test_expect_success 'dropout changes training: another run than --lora-dropout 0, another for another --seed' '
	icl-train $(echo "$LORA" | sed "s/--lora-dropout 0.1/--lora-dropout 0/") -o l0 rand.tok >m.l0 &&
	! cmp -s la/adapter_model.safetensors l0/adapter_model.safetensors &&
	metrics m.la >a && metrics m.l0 >b && ! cmp -s a b &&
	python3 -c "import json
a=json.load(open(\"l0/adapter_config.json\")); assert a[\"lora_dropout\"]==0.0" &&
	icl-train $LORA --seed 7 -o ls rand.tok >m.ls &&
	! cmp -s la/adapter_model.safetensors ls/adapter_model.safetensors
'

test_expect_success 'resume with dropout: 5 steps + resume == uninterrupted, bit for bit (checkpointing switched on)' '
	mkdir part && cp -r la/checkpoint-5 part/ &&
	icl-train $LORA --gradient-checkpointing -o part --resume rand.tok >m.part &&
	cmp la/adapter_model.safetensors part/adapter_model.safetensors &&
	cmp la/checkpoint-12/optimizer.safetensors part/checkpoint-12/optimizer.safetensors &&
	metrics m.la >a && metrics m.part >b && test_cmp a b
'

test_expect_success 'resume refuses another --lora-dropout' '
	mkdir part2 && cp -r la/checkpoint-5 part2/ &&
	test_must_fail icl-train $(echo "$LORA" | sed "s/--lora-dropout 0.1/--lora-dropout 0.2/") -o part2 --resume rand.tok 2>err &&
	test_grep "cannot resume: lora_dropout is 0.2 here but 0.1 in the checkpoint (give the same LoRA options" err
'

test_expect_success '--adapter DIR trains with its lora_dropout unless --lora-dropout is given' '
	icl-train -q -m "$LLAMA" --adapter la --max-steps 2 --batch-size 4 --lr 1e-2 -o ad1 rand.tok >/dev/null &&
	icl-train -q -m "$LLAMA" --adapter la --lora-dropout 0.1 --max-steps 2 --batch-size 4 --lr 1e-2 -o ad2 rand.tok >/dev/null &&
	icl-train -q -m "$LLAMA" --adapter la --lora-dropout 0 --max-steps 2 --batch-size 4 --lr 1e-2 -o ad3 rand.tok >/dev/null &&
	cmp ad1/adapter_model.safetensors ad2/adapter_model.safetensors &&
	! cmp -s ad1/adapter_model.safetensors ad3/adapter_model.safetensors &&
	python3 -c "import json
d=[json.load(open(f+\"/adapter_config.json\"))[\"lora_dropout\"] for f in (\"ad1\",\"ad2\",\"ad3\")]
assert d==[0.1,0.1,0.0], d"
'

test_expect_code 2 '--lora-dropout without --lora-r is a usage error' 'icl-train -m "$LLAMA" -o x --lora-dropout 0.1 rand.tok'

test_done
