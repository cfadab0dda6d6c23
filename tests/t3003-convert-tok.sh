#!/bin/sh
# icl-convert carries the tokenizer: folder -> GGUF -> folder, and (with the
# real model) GGUF -> folder -> GGUF, always the same tokenizer.
. "$(dirname "$0")/lib.sh"

SMOL=${ICL_SMOLLM2_GGUF:-$HOME/.cache/icl/SmolLM2-135M-Instruct.Q4_1.gguf}

# fingerprint of the tokenizer icl-tok reads from $1 (header of an encode)
fp() { echo '{"text":"Hello world 12"}' | icl-tok encode -t "$1" | head -1 | sed 's/ source=.*//'; }

# A 96-token byte-level tokenizer (tests/data/tok/tok96.py) for the 96-token model: ASCII 33..124,
# space as "Ġ", two merges, <|endoftext|>; $1 is the pre_tokenizer JSON.
mktok() {
	python3 "$DATA/tok/tok96.py" "$2" --pre "$1" \
		--config "{\"eos_token\": \"<|endoftext|>\", \"chat_template\": \"{{ messages }}\", \"model_max_length\": 1000000000000000019884624838656}"
}

# ids icl-tok gives for a text with tokenizer $1
ids() { echo '{"text":"Hello world, we will"}' | icl-tok encode -t "$1" --no-eos | tail -1; }

test_expect_success 'folder with a byte-level tokenizer -> GGUF (gpt2, pre gpt-2) -> folder' '
	mkdir -p m && cp "$DATA/model/llama-tiny/model/"* m/ &&
	mktok "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": true}" m &&
	icl-convert m m.gguf &&
	icl-convert m.gguf m2 &&
	test -f m2/tokenizer.json && test -f m2/tokenizer_config.json &&
	ids m >a && ids m.gguf >b && ids m2 >c && test_cmp a b && test_cmp a c &&
	printf "\t39 68 93 78 94 78 81 75 67 11 94 68 94 72 93\n" >want && test_cmp want a &&
	# the folder written from the GGUF is the GGUF tokenizer, fingerprint and all
	# (eos: the model'"'"'s config.json eos_token_id 2 wins over tokenizer_config.json'"'"'s
	# <|endoftext|>, as everywhere in icl: generation_config, config, tokenizer_config)
	fp m.gguf >fa && fp m2 >fb && test_cmp fa fb && test_grep " eos=2 " fa &&
	test_grep "chat_template" m2/tokenizer_config.json
'

test_expect_success 'a chat_template.jinja (transformers >= 4.43) goes into the GGUF, over tokenizer_config.json'"'"'s' '
	mkdir -p j && cp m/* j/ && rm -f j/*.gguf &&
	printf "%s" "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}" >j/chat_template.jinja &&
	icl-convert j j.gguf && icl-convert j.gguf j2 &&
	python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[\"chat_template\"], end=\"\")" j2/tokenizer_config.json >got &&
	test_cmp j/chat_template.jinja got &&
	rm j/chat_template.jinja && icl-convert j k.gguf && icl-convert k.gguf k2 &&
	test_grep "\"chat_template\": \"{{ messages }}\"" k2/tokenizer_config.json
'

test_expect_success 'a merged or trained folder keeps the chat_template.jinja; a GGUF converted over a folder leaves no stale one' '
	mkdir -p cj && cp m/* cj/ && rm -f cj/*.gguf &&
	printf "%s" "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}" >cj/chat_template.jinja &&
	icl-convert --adapter "$DATA/lora-llama-tiny/adapter" cj cjm &&
	test_cmp cj/chat_template.jinja cjm/chat_template.jinja &&
	icl-train -q -m cj -o cjt --max-steps 1 "$DATA/gen/llama-tiny.tok" >/dev/null &&
	test_cmp cj/chat_template.jinja cjt/chat_template.jinja &&
	icl-convert m.gguf cjm &&
	! test -e cjm/chat_template.jinja && test_grep "\"chat_template\": \"{{ messages }}\"" cjm/tokenizer_config.json
'

test_expect_success 'a folder tokenizer GGUF cannot name is refused by name' '
	mkdir -p bad && cp m/config.json m/generation_config.json m/model.safetensors bad/ &&
	mktok "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"String\": \"l\"}, \"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]}" bad &&
	test_must_fail icl-convert bad bad.gguf 2>err &&
	test_grep "bad/tokenizer.json: its pre-tokenizer matches none" err &&
	test ! -e bad.gguf
'

test_expect_success 'a folder whose tokenizer.json is no tokenizer is refused by name, no crash; nothing written' '
	mkdir -p notok && cp m/config.json m/generation_config.json m/model.safetensors notok/ &&
	echo "{}" >notok/tokenizer.json &&
	test_must_fail icl-convert notok notok.gguf 2>err &&
	test_grep "^icl-convert: notok: not a tokenizer: a JSON file without tokenizer.json.s \"model\" object" err &&
	test ! -e notok.gguf
'

if [ -r "$SMOL" ]; then
test_expect_success 'SmolLM2: GGUF -> folder -> GGUF (Q8_0) keeps the tokenizer and chat template' '
	icl-convert "$SMOL" s &&
	icl-convert -T Q8_0 s s.gguf &&
	fp "$SMOL" >a && fp s >b && fp s.gguf >c && test_cmp a b && test_cmp a c &&
	test_grep "You are a helpful AI assistant named SmolLM" s/tokenizer_config.json &&
	# every tokenizer key llama.cpp reads, as the source has it: token_type 3
	# (CONTROL) for the unk_token <|endoftext|> (was 2), add_space_prefix
	# false (was missing); add_eos_token false (llama.cpp'"'"'s default) is extra
	python3 "$DATA/gguf/gguf_kv.py" "$SMOL" tokenizer. | sort >ka &&
	python3 "$DATA/gguf/gguf_kv.py" s.gguf tokenizer. | grep -v "^tokenizer.ggml.add_eos_token bool False$" | sort >kb &&
	test "$(wc -l <ka)" -eq 12 && test_cmp ka kb
'
else
test_skip 'SmolLM2 GGUF -> folder -> GGUF' "$SMOL missing (make deps fetches it)"
fi

test_expect_success 'GGUF -> folder is all or nothing: a tokenizer error leaves no folder' '
	python3 -c "
import sys
b = open(\"m.gguf\", \"rb\").read()
k = b\"tokenizer.ggml.pre\"
i = b.index(k) + len(k) + 4 + 8
assert b[i - 8:i] == b\"\\x05\" + b\"\\0\" * 7
open(\"badpre.gguf\", \"wb\").write(b[:i] + b\"zmoll\" + b[i + 5:])
" &&
	test_must_fail icl-convert badpre.gguf out 2>err &&
	test_grep "zmoll" err &&
	test ! -e out && ls >ls && ! grep "tmp" ls
'

test_expect_success '... and into a folder with an earlier conversion it leaves that one whole' '
	icl-convert "$DATA/gguf/qwen2-tiny.f32.gguf" out2 && ls out2 >before && cksum out2/* >sums &&
	test_must_fail icl-convert badpre.gguf out2 2>err &&
	ls out2 >after && test_cmp before after && cksum out2/* >sums2 && test_cmp sums sums2 &&
	ls >ls && ! grep "tmp" ls
'

test_expect_success 'a conversion into a folder with an earlier one leaves no stale tokenizer beside the new weights' '
	icl-convert m.gguf out3 && test -f out3/tokenizer.json && echo keep >out3/README.md &&
	mkdir -p plain && cp "$DATA/model/llama-tiny/model/"* plain/ &&
	icl-convert plain plain.gguf &&
	icl-convert plain.gguf out3 &&
	test ! -e out3/tokenizer.json && test ! -e out3/tokenizer_config.json &&
	test -f out3/config.json && test -f out3/model.safetensors && test -f out3/generation_config.json &&
	echo keep >want && test_cmp want out3/README.md &&
	ls >ls && ! grep "tmp" ls &&
	icl-convert m.gguf out3 && ids out3 >a && ids m >b && test_cmp a b
'

test_done
