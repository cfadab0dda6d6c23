#!/bin/sh
# icl-train as a black box: usage, data checks, from scratch, exact resume,
# signals, NaN, validation, metrics.  (Numerics against transformers are in
# tests/unit/test_trainer.c and test_dataset.c.)
. "$(dirname "$0")/lib.sh"
MAN="$TESTS_DIR/../man/man1/icl-train.1"
LLAMA="$DATA/model/llama-tiny/model"
TOK512="$DATA/tok/bytelevel-512.json"
TOK2048="$DATA/tok/bytelevel-2048.json"

# 24 random examples for llama-tiny (vocab 96), prompt TAB response.
awk 'BEGIN { srand(7); for (e = 0; e < 24; e++) { n = 4 + int(rand() * 10); np = 1 + int(rand() * (n - 2));
	s = ""; for (i = 0; i < n; i++) s = s (i == 0 ? "" : i == np ? "\t" : " ") int(rand() * 96); print s } }' >rand.tok

cat >recs.jsonl <<'EOF'
{"prompt":"Name a colour.","response":"Blue."}
{"prompt":"What is two plus two?","response":"Four."}
{"prompt":"Say hello.","response":"Hello!"}
{"prompt":"Give an animal.","response":"A cat."}
{"prompt":"Opposite of hot?","response":"Cold."}
{"prompt":"Capital of France?","response":"Paris."}
EOF

test_expect_success '--help teaches and exits 0; --version' '
	icl-train --help >help &&
	test_grep "^Usage: icl-train" help &&
	test_grep "packing" help &&
	test_grep "resume" help &&
	icl-train --version >v && test_grep "^icl-train (icl) " v
'

test_expect_code 2 'no model is a usage error' 'icl-train -o out </dev/null'
test_expect_code 2 '--arch without -t is a usage error' 'icl-train --arch llama -o out </dev/null'
test_expect_code 2 'a bad --schedule is a usage error' 'icl-train -m "$LLAMA" -o out --schedule wavy </dev/null'

test_expect_success '-t: a folder without a tokenizer, or with a bad one, is named once with its tokenizer.json (a trailing slash too)' '
	mkdir adir bdir && printf "{bad\n" >bdir/tokenizer.json &&
	test_must_fail icl-train --arch llama -t adir -o out </dev/null 2>err &&
	echo "icl-train: adir/tokenizer.json: No such file or directory" >want &&
	test_cmp want err &&
	test_must_fail icl-train --arch llama -t bdir -o out </dev/null 2>err &&
	echo "icl-train: bdir/tokenizer.json: line 1: string or '"'"'}'"'"' expected near '"'"'bad'"'"'" >want &&
	test_cmp want err &&
	test_must_fail icl-train --arch llama -t bdir/tokenizer.json -o out </dev/null 2>err &&
	test_cmp want err &&
	test_must_fail icl-train --arch llama -t nodir -o out </dev/null 2>err &&
	echo "icl-train: nodir: No such file or directory" >want &&
	test_cmp want err &&
	test_must_fail icl-train --arch llama -t adir/ -o out </dev/null 2>err &&
	echo "icl-train: adir/tokenizer.json: No such file or directory" >want &&
	test_cmp want err &&
	test_must_fail icl-tok encode -t adir/ </dev/null 2>err &&
	echo "icl-tok: adir/tokenizer.json: No such file or directory" >want &&
	test_cmp want err &&
	test_must_fail icl-gen -m adir/ </dev/null 2>err &&
	echo "icl-gen: adir/config.json: No such file or directory" >want &&
	test_cmp want err
'

test_expect_success 'a missing token file or --valid is named before the model loads, and no output folder is made' '
	test_must_fail icl-train -q -m nomodel -o out missing.tok 2>err &&
	echo "icl-train: missing.tok: No such file or directory" >want &&
	test_cmp want err &&
	test_must_fail icl-train -q -m "$LLAMA" -o out --valid adir rand.tok 2>err &&
	echo "icl-train: adir: is a folder, not a file" >want &&
	test_cmp want err &&
	! test -e out
'

test_expect_success 'an output folder that is a file is an error' '
	test_must_fail icl-train -q -m "$LLAMA" -o help rand.tok 2>err &&
	test_grep "help: exists and is not a folder" err
'

test_expect_success 'an id beyond the vocabulary is an error naming file:line' '
	printf "1 2\t3 4\n5 6\t96 7\n" >bad.tok &&
	test_must_fail icl-train -q -m "$LLAMA" -o out bad.tok 2>err &&
	test_grep "bad.tok:2: token id 96 is not below the vocabulary size 96" err
'

test_expect_success 'no example in the data: an error naming the files' '
	: >empty.tok &&
	test_must_fail icl-train -q -m "$LLAMA" -o out empty.tok 2>err &&
	test_grep "^icl-train: empty.tok: no training example: no token line" err &&
	echo "#icl-tokens 1 fingerprint=xxh3:0123456789abcdef vocab_size=96 bos=-1 eos=-1 pad=-1 source=x" >header.tok &&
	icl-train -q -m "$LLAMA" -o out1 --max-steps 1 header.tok rand.tok >/dev/null &&
	test_must_fail icl-train -q -m "$LLAMA" -o out empty.tok header.tok 2>err &&
	test_grep "^icl-train: empty.tok, header.tok: no training example: no token line" err &&
	test_must_fail icl-train -q -m "$LLAMA" -o out <empty.tok 2>err &&
	test_grep "^icl-train: <stdin>: no training example" err &&
	printf "1 2 3\t4 5 6 7\n" >long1.tok &&
	test_must_fail icl-train -q -m "$LLAMA" -o out --seq-len 4 long1.tok 2>err &&
	test_grep "dropped 1 of 1 examples" err &&
	test_grep "^icl-train: long1.tok: no training example left of the 1 read (see above)" err
'

test_expect_success 'a model that does not load: its file named once' '
	mkdir -p badmodel && echo "{" >badmodel/config.json &&
	test_must_fail icl-train -q -m badmodel -o out rand.tok 2>err &&
	test_grep "^icl-train: badmodel/config.json:2: " err &&
	head -c 100 "$DATA/model/llama-tiny/model/model.safetensors" >cut.safetensors &&
	mkdir -p cutmodel && cp "$LLAMA/config.json" cutmodel/ && mv cut.safetensors cutmodel/model.safetensors &&
	test_must_fail icl-train -q -m cutmodel -o out rand.tok 2>err &&
	test_grep "^icl-train: cutmodel/model.safetensors: " err &&
	test_must_fail icl-train -q -m cutmodel -o out --lora-r 2 rand.tok 2>err &&
	test_grep "^icl-train: cutmodel/model.safetensors: " err
'

test_expect_success 'a header naming another tokenizer is an error' '
	icl-tok encode -t "$TOK2048" <recs.jsonl >other.tok &&
	test_must_fail icl-train -q --arch llama --hidden-size 32 --num-hidden-layers 1 --num-attention-heads 2 \
		--intermediate-size 64 -t "$TOK512" -o out other.tok 2>err &&
	test_grep "other.tok:1: token lines were made by tokenizer xxh3:" err
'

test_expect_success "examples whose response cannot fit are dropped and counted" '
	printf "1 2 3\t4 5 6 7\n1\t2\n1 2 3 4 5 6 7 8\t9 10\n" >long.tok &&
	icl-train -m "$LLAMA" -o out --seq-len 4 --max-steps 1 long.tok >m 2>err &&
	test_grep "dropped 1 of 3 examples whose final response does not fit in --seq-len 4" err &&
	test_grep "2 examples, 6 tokens" err &&
	test_grep "1 truncated from the left" err &&
	test_grep "done: 1 step; model in out," err
'

test_expect_success 'from scratch: a complete HF folder with the tokenizer, metrics JSONL, val_loss' '
	icl-tok encode -t "$TOK512" <recs.jsonl >train.tok &&
	icl-train --arch llama --hidden-size 32 --num-hidden-layers 2 --num-attention-heads 4 \
		--num-key-value-heads 2 --intermediate-size 64 -t "$TOK512" -o scratch \
		--batch-size 2 --epochs 3 --lr 3e-3 --valid train.tok --eval-every 3 train.tok >m 2>err &&
	test_cmp "$TOK512" scratch/tokenizer.json &&
	test -f scratch/config.json && test -f scratch/model.safetensors &&
	test_grep "\"model_type\": \"llama\"" scratch/config.json &&
	test_grep "\"vocab_size\": 512" scratch/config.json &&
	test -f scratch/checkpoint-9/optimizer.safetensors &&
	test -f scratch/checkpoint-9/trainer_state.json &&
	test_cmp scratch/tokenizer.json scratch/checkpoint-9/tokenizer.json &&
	test $(wc -l <m) -eq 9 &&
	test_grep "\"step\": 1, \"epoch\": 0.333333, \"loss\": " m &&
	test $(grep -c val_loss m) -eq 3 &&
	sed -n "9p" m | grep -q "\"step\": 9, \"epoch\": 3," &&
	test_grep "icl-train: model llama" err &&
	! ls scratch | grep -q tmp
'

test_expect_success 'val_loss falls when training on the validation data' '
	first=$(grep -o "\"val_loss\": [0-9.e-]*" m | head -1 | cut -d" " -f2) &&
	last=$(grep -o "\"val_loss\": [0-9.e-]*" m | tail -1 | cut -d" " -f2) &&
	awk -v a="$first" -v b="$last" "BEGIN { exit !(b < a) }"
'

test_expect_success 'gpt2 and qwen2 from scratch' '
	icl-train -q --arch gpt2 --hidden-size 32 --num-hidden-layers 1 --num-attention-heads 2 \
		-t "$TOK512" -o g --seq-len 64 --max-steps 2 train.tok >m &&
	test_grep "\"model_type\": \"gpt2\"" g/config.json &&
	test_grep "\"n_positions\": 64" g/config.json &&
	icl-train -q --arch qwen2 --hidden-size 32 --num-hidden-layers 1 --num-attention-heads 2 \
		--num-key-value-heads 1 --intermediate-size 48 -t "$TOK512" -o q --max-steps 2 train.tok >m &&
	test_grep "\"model_type\": \"qwen2\"" q/config.json &&
	test_grep "self_attn.k_proj.bias" q/model.safetensors
'

ARGS="-q -m $LLAMA --batch-size 3 --grad-accum 2 --epochs 3 --lr 1e-2 --weight-decay 0.1 --schedule cosine --warmup-steps 2 --save-every 5 --threads 2"
test_expect_success 'resume: 5 steps + resume == uninterrupted run, bit for bit' '
	icl-train $ARGS -o full rand.tok >m.full &&
	test $(wc -l <m.full) -eq 12 &&
	test -d full/checkpoint-5 && test -d full/checkpoint-10 && test -d full/checkpoint-12 &&
	mkdir part && cp -r full/checkpoint-5 part/ &&
	icl-train $ARGS -o part --resume rand.tok >m.part &&
	test $(wc -l <m.part) -eq 12 &&
	head -5 m.full >a && head -5 m.part >b && test_cmp a b &&
	sed -n "6p" m.part | grep -q "\"step\": 6," &&
	cmp full/model.safetensors part/model.safetensors &&
	cmp full/checkpoint-12/optimizer.safetensors part/checkpoint-12/optimizer.safetensors &&
	cmp full/checkpoint-10/model.safetensors part/checkpoint-10/model.safetensors &&
	sed "s/, \"tokens_per_s\": [0-9.]*//" m.full >a &&
	sed "s/, \"tokens_per_s\": [0-9.]*//" m.part >b &&
	test_cmp a b
'

test_expect_success 'resume with packing and shuffling across epochs is exact too' '
	icl-train $ARGS --packing --seq-len 24 -o pfull rand.tok >m.pf &&
	n=$(wc -l <m.pf) && test "$n" -gt 5 &&
	mkdir ppart && cp -r pfull/checkpoint-5 ppart/ &&
	icl-train $ARGS --packing --seq-len 24 -o ppart --resume rand.tok >m.pp &&
	cmp pfull/model.safetensors ppart/model.safetensors
'

test_expect_success 'resume refuses other data or options' '
	head -20 rand.tok >less.tok &&
	test_must_fail icl-train $ARGS -o part --resume less.tok 2>err &&
	test_grep "cannot resume: the number of examples is 20 here but 24" err &&
	test_must_fail icl-train $ARGS --batch-size 4 -o part --resume rand.tok 2>err &&
	test_grep "cannot resume: --batch-size is 4 here but 3" err &&
	test_must_fail icl-train $ARGS -o nothing --resume rand.tok 2>err &&
	test_grep "no complete checkpoint" err
'

test_expect_success 'trainer_state.json holds step, data position and RNG state' '
	s=full/checkpoint-5/trainer_state.json &&
	test_grep "\"global_step\": 5" $s &&
	test_grep "\"cursor\": " $s &&
	test_grep "\"rng\": " $s &&
	test_grep "\"data_hash\": \"xxh3:" $s &&
	test_grep "\"kind\": \"cosine\"" $s
'

test_expect_success 'SIGTERM saves a checkpoint and exits 143; --resume continues' '
	icl-train -q -m "$LLAMA" --batch-size 2 --max-steps 100000 --schedule constant --lr 1e-3 \
		-o sig rand.tok >m.sig 2>err &
	pid=$! &&
	i=0; while ! [ $(cat m.sig 2>/dev/null | wc -l) -ge 3 ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done &&
	kill -TERM $pid &&
	rc=0; wait $pid || rc=$?; test $rc -eq 143 || { kill -9 $pid; false; } ;
	test_grep "interrupted at step" err &&
	ls sig | grep -q "^checkpoint-[0-9]*$" &&
	ck=$(ls sig | grep "^checkpoint-" | sed "s/checkpoint-//") &&
	test "$ck" -ge 3 &&
	test -f sig/checkpoint-$ck/optimizer.safetensors
'

test_expect_success 'SIGINT exits 130' '
	icl-train -q -m "$LLAMA" --batch-size 2 --max-steps 100000 -o sigi rand.tok >m.sigi 2>err &
	pid=$! &&
	i=0; while ! [ $(cat m.sigi 2>/dev/null | wc -l) -ge 1 ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done &&
	kill -INT $pid &&
	rc=0; wait $pid || rc=$?; test $rc -eq 130 || { kill -9 $pid; false; }
'

test_expect_success 'a loss that becomes infinite or NaN stops the run naming the step' '
	test_must_fail icl-train -q -m "$LLAMA" --batch-size 4 --max-steps 50 --save-every 1 --schedule constant --lr 1e30 \
		--clip 0 -o nan rand.tok >m 2>err &&
	test_grep "step [0-9]*: the \(loss\|gradient norm\) is \(NaN\|infinite\); stopping (last good checkpoint: nan/checkpoint-" err &&
	test -d nan/checkpoint-1 &&
	! test -f nan/model.safetensors
'

test_done
