#!/bin/sh
# icl-eval -m and icl-gen --ids check the #icl-tokens header of token lines
# against the model's own tokenizer: a folder's tokenizer.json, a GGUF's
# tokenizer.ggml.* keys, the base's of an adapter folder (-m ADAPTER).
# Tokens made by another tokenizer are refused, not scored.
. "$(dirname "$0")/lib.sh"

# A 96-token byte-level tokenizer (tests/data/tok/tok96.py) for the 96-token llama-tiny model in $1
# (as t3003): ASCII 33..124, space as "Ġ", two merges (order A or B: another
# tokenizer with the same vocabulary), <|endoftext|>.
mktok() { python3 "$DATA/tok/tok96.py" "$1" --merges "$2"; }

cat >d.jsonl <<'J'
{"prompt":"Hello world","response":"we will"}
{"prompt":"All well","response":"ok"}
J

test_expect_success 'setup: a model folder with tokenizer A, its GGUF (A as GGUF keeps it: another fingerprint), tokens of each and of B' '
	mkdir m o && cp "$DATA/model/llama-tiny/model/"* m/ && cp "$DATA/model/llama-tiny/model/"* o/ &&
	mktok m A && mktok o B &&
	icl-convert m m.gguf &&
	icl-tok encode -t m d.jsonl >own.tok && icl-tok encode -t m.gguf d.jsonl >own-gguf.tok &&
	icl-tok encode -t o d.jsonl >other.tok &&
	head -1 own.tok | sed "s/ source=.*//" >a && head -1 other.tok | sed "s/ source=.*//" >c && ! test_cmp a c
'

test_expect_success 'icl-eval -m FOLDER: own tokens scored, another tokenizer'"'"'s refused' '
	icl-eval -q -m m own.tok >s && test_grep "\"records\": *2" s &&
	test_must_fail icl-eval -q -m m other.tok 2>err && test_grep "another tokenizer" err
'

test_expect_success 'icl-eval -m GGUF: own tokens scored, another tokenizer'"'"'s refused (naming the GGUF)' '
	icl-eval -q -m m.gguf own-gguf.tok >s && test_grep "\"records\": *2" s &&
	test_must_fail icl-eval -q -m m.gguf other.tok >out 2>err &&
	test_grep "other.tok:1: .*another tokenizer.*m.gguf" err && test ! -s out
'

test_expect_success 'icl-eval -m ADAPTER (base: a folder, a GGUF): the base'"'"'s tokenizer checks the tokens' '
	icl-train -q -m m --lora-r 2 --max-steps 1 -o la own.tok >/dev/null &&
	icl-train -q -m m.gguf --lora-r 2 --max-steps 1 -o lg own-gguf.tok >/dev/null &&
	icl-eval -q -m la own.tok >s && icl-eval -q -m lg own-gguf.tok >s &&
	test_must_fail icl-eval -q -m la other.tok 2>err && test_grep "another tokenizer" err &&
	test_must_fail icl-eval -q -m lg other.tok 2>err && test_grep "another tokenizer" err
'

test_expect_success 'icl-gen --ids -m GGUF (and -m ADAPTER on it): another tokenizer'"'"'s tokens refused' '
	icl-gen -q -m m.gguf --ids -n 2 own-gguf.tok >g && test $(wc -l <g) = 3 &&
	test_must_fail icl-gen -q -m m.gguf --ids -n 2 other.tok >g 2>err && test_grep "another tokenizer" err &&
	test_must_fail icl-gen -q -m lg --ids -n 2 other.tok 2>err && test_grep "another tokenizer" err &&
	test_must_fail icl-gen -q -m m --ids -n 2 other.tok 2>err && test_grep "another tokenizer" err &&
	test_must_fail icl-gen -q -m m.gguf --ids -n 2 own.tok 2>err && test_grep "another tokenizer" err
'

test_expect_success 'a GGUF without a tokenizer: token lines are bounded by its vocabulary only, as before' '
	icl-eval -q -m "$DATA/gguf/llama-tiny.f32.gguf" other.tok >s && test_grep "\"records\": *2" s
'

test_expect_success '--chat-template takes a GGUF (its tokenizer.chat_template), and a GGUF model'"'"'s is the default' '
	icl-gen --help >h && test_grep "GGUF file, tokenizer_config.json or .jinja" h &&
	icl-fmt --help >h && test_grep "a GGUF model file (its" h &&
	echo "{\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}" >c.jsonl &&
	icl-gen -q -m m.gguf -n 2 c.jsonl >a && test_grep "\"completion\"" a &&
	icl-gen -q -m m.gguf --chat-template m.gguf -n 2 c.jsonl >b && test_cmp a b
'

test_done
