#!/bin/sh
# icl-gen --ids: greedy parity with transformers on the tiny fixture models
# and with llama2.c on stories260K, batching, seeds, token-line handling.
. "$(dirname "$0")/lib.sh"
M="$DATA/model"
G="$DATA/gen"

for m in llama-tiny gpt2-tiny qwen2-tiny; do
	test_expect_success "$m: greedy ids equal transformers' generate()" "
		icl-gen -m $M/$m/model --ids -n 12 <$G/$m.greedy.in >out &&
		test_cmp $G/$m.greedy.out out
	"
done

test_expect_success 'stories260K: 200 greedy ids from BOS equal llama2.c run.c' '
	echo 1 | icl-gen -m $M/stories260K/model --ids -n 200 >out &&
	printf "1\t" >want && cat $M/stories260K/greedy_ids_from_bos_n200.txt >>want &&
	test_cmp want out
'

cat >prompts <<'P'
1
1 461 461
1 300 301 302 303 304
1	461	401
5 6 7
1	461 461 401
P

test_expect_success 'greedy output does not depend on the batch size' '
	icl-gen -m $M/stories260K/model --ids -n 20 -b 1 <prompts >b1 &&
	icl-gen -m $M/stories260K/model --ids -n 20 -b 4 <prompts >b4 &&
	icl-gen -m $M/stories260K/model --ids -n 20 <prompts >b8 &&
	test_cmp b1 b4 && test_cmp b1 b8 &&
	test $(wc -l <b1) = 6
'

test_expect_success 'sampling with --seed does not depend on the batch size' '
	icl-gen -m $M/stories260K/model --ids -n 20 -b 1 --temperature 1.3 --seed 7 <prompts >s1 &&
	icl-gen -m $M/stories260K/model --ids -n 20 -b 5 --temperature 1.3 --seed 7 <prompts >s5 &&
	test_cmp s1 s5 &&
	test_must_fail cmp -s s1 b1
'

test_expect_success 'another seed gives other samples; the same seed the same' '
	icl-gen -m $M/stories260K/model --ids -n 20 --temperature 1.3 --seed 8 <prompts >s8 &&
	icl-gen -m $M/stories260K/model --ids -n 20 --temperature 1.3 --seed 8 --threads 1 <prompts >s8b &&
	test_must_fail cmp -s s1 s8 && test_cmp s8 s8b
'

test_expect_success 'segments are kept, a last target segment (the reference) is replaced' '
	sed -n 4p b1 | cut -f1-3 >got && printf "1\t461\t401\n" >want && test_cmp want got &&
	sed -n 6p b1 | cut -f1 >got && echo 1 >want && test_cmp want got &&
	test $(sed -n 6p b1 | awk -F"\t" "{print NF}") = 2 &&
	sed -n 1p b1 | cut -f2 >a && sed -n 6p b1 | cut -f2 >b && test_cmp a b
'

test_expect_success '--max-new-tokens bounds the ids; eos ids stop and are kept' '
	echo 1 | icl-gen -m $M/stories260K/model --ids -n 3 >out &&
	printf "1\t461 461 401\n" >want && test_cmp want out &&
	mkdir m && cp $M/stories260K/model/* m/ &&
	printf "{\"eos_token_id\": [7, 401]}\n" >m/generation_config.json &&
	echo 1 | icl-gen -m m --ids -n 30 >out &&
	test_cmp want out
'

test_expect_success 'a token-lines header passes through' '
	printf "#icl-tokens 1 fingerprint=xxh3:0123456789abcdef vocab_size=512 bos=1 eos=2 pad=-1 source=x\n1\n" >h &&
	icl-gen -m $M/stories260K/model --ids -n 3 h >out &&
	head -1 h >want && printf "1\t461 461 401\n" >>want && test_cmp want out
'

test_expect_code 1 'a header with a larger vocabulary than the model is an error' '
	printf "#icl-tokens 1 fingerprint=xxh3:0123456789abcdef vocab_size=32000 bos=1 eos=2 pad=-1 source=x\n1\n" |
		icl-gen -m $M/stories260K/model --ids -n 3 2>err; rc=$?
	grep -q "<stdin>:1: the tokens. vocab_size 32000 is larger than the model.s 512" err || rc=99
	exit $rc
'

test_expect_code 1 'an id beyond the vocabulary names the line' '
	printf "1 2\n1 512\n" | icl-gen -m $M/stories260K/model --ids -n 3 2>err; rc=$?
	grep -q "<stdin>:2:" err || rc=99
	exit $rc
'

test_expect_code 1 'an empty prompt is an error' '
	printf "\t5 6\n" | icl-gen -m $M/stories260K/model --ids -n 3 2>err; rc=$?
	grep -q "prompt is empty" err || rc=99
	exit $rc
'

test_expect_code 1 'a prompt longer than the context is an error' '
	seq 1 70 | tr "\n" " " | sed "s/ $//" | icl-gen -m $M/gpt2-tiny/model --ids -n 3 2>err; rc=$?
	grep -q "<stdin>:1: the prompt has 70 tokens.*max_position_embeddings 64" err || rc=99
	exit $rc
'

test_expect_success 'generation stops when the context is full' '
	seq 1 60 | tr "\n" " " | sed "s/ $//" | icl-gen -m $M/gpt2-tiny/model --ids -n 30 >out &&
	test $(cut -f2 out | wc -w) = 5
'

test_expect_success 'quiet on a closed pipe' '
	for i in $(seq 1 40); do echo 1; done >many &&
	{ icl-gen -m $M/stories260K/model --ids -n 5 -b 2 many 2>err; echo $? >rc; } | head -1 >first &&
	test ! -s err &&
	printf "1\t461 461 401 401 401\n" >want && test_cmp want first
'

test_done
