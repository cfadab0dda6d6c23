#!/bin/sh
# icl-eval -m: masked loss of token lines equals transformers' loss on the
# fixture batch; perplexity per token over the whole input; token accuracy.
. "$(dirname "$0")/lib.sh"
M="$DATA/model"
G="$DATA/gen"
# close A B TOL: |A - B| <= TOL
close() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= t) }'; }
field() { python3 -c 'import json,sys; v=json.load(sys.stdin)[sys.argv[1]]; print("null" if v is None else v)' "$1" <"$2"; }

for m in llama-tiny gpt2-tiny qwen2-tiny; do
	test_expect_success "$m: loss of the fixture token lines equals transformers'" "
		icl-eval -m $M/$m/model $G/$m.tok >sum &&
		read want n <$G/$m.loss &&
		test \$(field tokens sum) = \$n &&
		test \$(field records sum) = 2 &&
		close \$(field loss sum) \$want 1e-5 &&
		close \$(field perplexity sum) \$(awk -v l=\$want 'BEGIN{print exp(l)}') 1e-3
	"
done

test_expect_success 'perplexity is per token over the whole input, not a mean of lines' '
	icl-eval -m $M/llama-tiny/model $G/llama-tiny.tok >all &&
	head -1 $G/llama-tiny.tok | icl-eval -m $M/llama-tiny/model >l1 &&
	tail -1 $G/llama-tiny.tok | icl-eval -m $M/llama-tiny/model >l2 &&
	test $(field tokens l1) = 8 && test $(field tokens l2) = 6 &&
	w=$(awk -v a=$(field loss l1) -v b=$(field loss l2) "BEGIN{printf \"%.17g\", (8*a + 6*b) / 14}") &&
	close $(field loss all) $w 1e-9 &&
	close $(field perplexity all) $(awk -v l=$w "BEGIN{printf \"%.17g\", exp(l)}") 1e-6
'

test_expect_success 'token accuracy: 1 on the greedy sequence, 4/5 with one changed target' '
	printf "1\t%s\n" "$(cat $M/stories260K/greedy_ids_from_bos_n200.txt)" | icl-eval -m $M/stories260K/model >g &&
	test $(field tokens g) = 200 && close $(field token_accuracy g) 1 0 &&
	printf "1 461\t461 401 401 401 5\n" | icl-eval -m $M/stories260K/model >h &&
	test $(field tokens h) = 5 && close $(field token_accuracy h) 0.8 1e-12
'

test_expect_success 'only target segments count; no targets gives null' '
	printf "1 461 461 401\n" | icl-eval -m $M/stories260K/model >n &&
	test $(field tokens n) = 0 && test $(field loss n) = null && test $(field perplexity n) = null &&
	printf "1 461\t461\t401 401\t401\n" | icl-eval -m $M/stories260K/model >s &&
	test $(field tokens s) = 2
'

test_expect_success 'an empty file or input: null scores and a warning naming it (-q: none)' '
	: >empty.tok &&
	icl-eval -m $M/stories260K/model empty.tok >e 2>err &&
	test $(field records e) = 0 && test $(field loss e) = null &&
	test_grep "^icl-eval: empty.tok: empty input, no records$" err &&
	icl-eval -m $M/stories260K/model </dev/null >e 2>err &&
	test_grep "^icl-eval: <stdin>: empty input, no records$" err &&
	icl-eval -q -m $M/stories260K/model empty.tok >e 2>err &&
	! test -s err
'

test_expect_success 'a header naming another tokenizer is an error when the model has one' '
	mkdir m && cp $M/stories260K/model/* m/ && cp "$DATA/tok/bytelevel-512.json" m/tokenizer.json &&
	printf "#icl-tokens 1 fingerprint=xxh3:0123456789abcdef vocab_size=512 bos=1 eos=2 pad=-1 source=x\n1\t2\n" >h.tok &&
	{ icl-eval -m m h.tok 2>err; test $? = 1; } &&
	test_grep "h.tok:1:" err &&
	printf "#icl-tokens 1 fingerprint=xxh3:0123456789abcdef vocab_size=4096 bos=1 eos=2 pad=-1 source=x\n1\t3000\n" >h2.tok &&
	{ icl-eval -m m h2.tok 2>err; test $? = 1; } &&
	test_grep "h2.tok:1: tokens were made by another tokenizer .* (tokenizer m/tokenizer.json)" err &&
	icl-eval -m $M/stories260K/model h.tok >ok && test $(field tokens ok) = 1
'

test_expect_code 1 'an id beyond the vocabulary names the line' '
	printf "1\t2\n1\t96\n" | icl-eval -m $M/llama-tiny/model 2>err; rc=$?
	grep -q "<stdin>:2:" err || rc=99
	exit $rc
'

test_expect_success 'a line longer than max_position_embeddings is an error naming it, as in icl-gen (issue 18 defect 4)' '
	awk "BEGIN { s = \"1\"; for (i = 1; i < 64; i++) s = s \" \" (i % 90 + 1); print s; print s \" 5\" }" >long.tok &&
	head -1 long.tok | icl-eval -m $M/llama-tiny/model >ok && test $(field records ok) = 1 &&
	test_must_fail icl-eval -m $M/llama-tiny/model long.tok >out 2>err &&
	test_grep "^icl-eval: long.tok:2: the line has 65 tokens, more than the model'"'"'s context (max_position_embeddings 64)" err &&
	! test -s out
'

test_expect_success 'a FIFO named model.safetensors is refused at once, not waited on (issue 18 defect 10)' '
	mkdir -p fifo && cp "$DATA/model/llama-tiny/model/config.json" fifo/ && mkfifo fifo/model.safetensors &&
	test_must_fail timeout 20 icl-eval -m fifo /dev/null 2>err &&
	test_grep "model.safetensors: not a regular file" err
'

test_expect_success 'a model that does not load is named once; a file neither GGUF nor a folder says so' '
	mkdir -p badm && echo "{" >badm/config.json &&
	test_must_fail icl-eval -m badm /dev/null 2>err &&
	test_grep "^icl-eval: badm/config.json:2: " err &&
	test_must_fail icl-gen -m badm -n 1 --ids </dev/null 2>err &&
	test_grep "^icl-gen: badm/config.json:2: " err &&
	echo "not a model" >fake.gguf &&
	test_must_fail icl-eval -m fake.gguf /dev/null 2>err &&
	test_grep "^icl-eval: fake.gguf: neither a GGUF file nor a model folder" err &&
	test_must_fail icl-gen -m fake.gguf -n 1 --ids </dev/null 2>err &&
	test_grep "^icl-gen: fake.gguf: neither a GGUF file nor a model folder" err
'

test_done
