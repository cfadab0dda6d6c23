#!/bin/sh
# icl-train --loss-average tokens|examples: the logged loss of a step
# against icl-eval run on each example alone and combined by hand (the
# mean of the examples' mean losses; tokens: icl-eval's mean over all),
# with packing and gradient accumulation; recorded in the checkpoint,
# exact resume, a resume with the other value refused.  The numerics
# (weights, gradient, finite differences): tests/unit/test_loss_average.c.
. "$(dirname "$0")/lib.sh"
LLAMA="$DATA/model/llama-tiny/model"

# 8 examples of 4 to 17 tokens, responses of 1 to 15 tokens
awk 'BEGIN { srand(5); for (e = 0; e < 8; e++) { n = 4 + int(rand() * 14); np = 1 + int(rand() * (n - 2));
	s = ""; for (i = 0; i < n; i++) s = s (i == 0 ? "" : i == np ? "\t" : " ") int(rand() * 96); print s } }' >rand.tok

metrics() { sed "s/, \"tokens_per_s\": [0-9.]*//" "$1"; }
# the "loss" of a JSON line
loss() { sed -n "s/.*\"loss\": *\([-0-9.e]*\).*/\1/p" "$1"; }

# one step is the whole epoch: 8 examples packed 2 rows to a micro-batch, 2
# micro-batches (--grad-accum 2), unshuffled
ONE="-q -m $LLAMA --no-shuffle --packing --seq-len 24 --batch-size 2 --grad-accum 2 --epochs 1 --lr 1e-2 --threads 2"

test_expect_success '--help and the summary name it' '
	icl-train --help >help &&
	test_grep "^      --loss-average HOW" help &&
	icl-train $(echo "$ONE" | sed "s/^-q //") --loss-average examples -o s rand.tok 2>err >/dev/null &&
	test_grep "loss_average examples |" err
'

test_expect_success 'one step over all examples, packed and accumulated' '
	icl-train $ONE -o t rand.tok >m.t &&
	test "$(wc -l <m.t)" -eq 1 &&
	test_grep "\"epoch\": 1," m.t
'

test_expect_success 'examples: the step loss is the mean of each example'"'"'s mean loss (icl-eval per example)' '
	icl-train $ONE --loss-average examples -o e rand.tok >m.e &&
	i=0 && : >per &&
	while read -r line; do
		i=$((i + 1)) && printf "%s\n" "$line" >one.tok &&
		icl-eval -m "$LLAMA" --threads 1 one.tok >>per || return 1
	done <rand.tok &&
	test "$(wc -l <per)" -eq 8 &&
	loss per >l && loss m.e >got &&
	awk -v got="$(cat got)" "{ s += \$1; n++ } END { want = s / n; d = got - want; if (d < 0) d = -d
		if (n != 8 || d > 1e-6 * want) { print \"got\", got, \"want\", want; exit 1 } }" l
'

test_expect_success 'tokens (the default): the mean over all target tokens (icl-eval over the file)' '
	icl-train $ONE --loss-average tokens -o tk rand.tok >m.tk &&
	metrics m.t >a && metrics m.tk >b && test_cmp a b &&
	icl-eval -m "$LLAMA" --threads 1 rand.tok >all && loss all >want && loss m.t >got &&
	awk -v w="$(cat want)" -v g="$(cat got)" "BEGIN { d = g - w; if (d < 0) d = -d; exit !(d <= 1e-6 * w) }" &&
	loss m.e >ge && ! cmp -s got ge &&
	cmp t/model.safetensors tk/model.safetensors &&
	! cmp -s t/model.safetensors e/model.safetensors
'

R="-q -m $LLAMA --packing --seq-len 24 --batch-size 2 --grad-accum 2 --epochs 3 --lr 1e-2 --save-every 2 --threads 2"

test_expect_success 'examples: recorded in the checkpoint; 2 steps + resume == uninterrupted, bit for bit' '
	icl-train $R --loss-average examples -o full rand.tok >m.full &&
	python3 -c "import json
s=json.load(open(\"full/checkpoint-2/trainer_state.json\"))[\"icl\"][\"settings\"]
assert s[\"loss_average\"]==\"examples\", s" &&
	mkdir part && cp -r full/checkpoint-2 part/ &&
	icl-train $R --loss-average examples --threads 1 -o part --resume rand.tok >m.part &&
	cmp full/model.safetensors part/model.safetensors &&
	metrics m.full >a && metrics m.part >b && test_cmp a b
'

test_expect_success 'a resume with the other --loss-average is refused, naming it' '
	mkdir part2 && cp -r full/checkpoint-2 part2/ &&
	test_must_fail icl-train $R -o part2 --resume rand.tok 2>err &&
	test_grep "cannot resume: --loss-average is tokens here but examples in the checkpoint" err
'

test_expect_success 'a checkpoint without the setting (before the option) counts as tokens' '
	icl-train $R -o old rand.tok >m.old &&
	mkdir part3 && cp -r old/checkpoint-2 part3/ &&
	python3 -c "import json
p=\"part3/checkpoint-2/trainer_state.json\"; j=json.load(open(p))
assert j[\"icl\"][\"settings\"].pop(\"loss_average\")==\"tokens\"
json.dump(j, open(p, \"w\"))" &&
	icl-train $R -o part3 --resume rand.tok >m.part3 &&
	cmp old/model.safetensors part3/model.safetensors &&
	test_must_fail icl-train $R --loss-average examples -o part3 --resume rand.tok 2>err
'

test_expect_code 2 'a bad --loss-average is a usage error' 'icl-train -m "$LLAMA" -o x --loss-average sum rand.tok'

test_done
