#!/bin/sh
# README's recipe on the real model ("GGUF files" and "Fine-tuning a Hugging
# Face model you already have"): icl-convert SmolLM2-135M-Instruct's GGUF
# into a Hugging Face folder, then, with the tokenizer_config.json that
# transformers writes for this model in place of icl-convert's (it names
# <|im_start|>, id 1, as eos_token: issue 18's silent EOS disagreement),
# icl-fmt -T chatml | icl-tok encode --parse-special -t FOLDER, icl-train -m FOLDER (LoRA, a
# few steps), icl-gen -m FOLDER --adapter RUN.  All three agree on one EOS,
# <|im_end|> (id 2, generation_config.json's): the token lines end with it,
# icl-train takes them without a word, icl-gen stops at it.  Token lines
# encoded with the tokenizer files alone (EOS 1) are refused by icl-train and
# warned about by icl-gen.
. "$(dirname "$0")/lib.sh"
S="$DATA/smollm2"
GGUF="${ICL_SMOLLM2_GGUF:-}"

if [ -z "$GGUF" ] || [ ! -r "$GGUF" ]; then
	test_skip 'SmolLM2-135M-Instruct GGUF' 'ICL_SMOLLM2_GGUF missing: make deps fetches it'
	test_done
	exit 0
fi
if [ "${ICL_SANITIZE:-0}" = 1 ]; then # minutes of a 135M model under ASan; t0502 runs the same checks on a fixture
	test_skip 'the SmolLM2 folder recipe' 'run in the -O3 build (make check)'
	test_done
	exit 0
fi

cat >data.jsonl <<'EOF2'
{"instruction":"Name a colour.","output":"Blue."}
{"instruction":"Say hello.","output":"Hello!"}
{"instruction":"Opposite of hot?","output":"Cold."}
{"instruction":"Capital of France?","output":"Paris."}
EOF2
# the id of a token in a tokenizer.json
tok_id() { python3 -c 'import json,sys; t=json.load(open(sys.argv[1])); print(t["model"]["vocab"].get(sys.argv[2], [a["id"] for a in t["added_tokens"] if a["content"] == sys.argv[2]][0]))' "$1" "$2"; }

test_expect_success 'icl-convert GGUF -> folder; the transformers tokenizer_config.json (eos_token <|im_start|>) in it' '
	icl-convert "$GGUF" sm &&
	test -s sm/model.safetensors && test -s sm/tokenizer.json && test -s sm/generation_config.json &&
	cp "$S/tokenizer_config.json" sm/tokenizer_config.json &&
	grep -q "\"eos_token\": \"<|im_start|>\"" sm/tokenizer_config.json &&
	test "$(tok_id sm/tokenizer.json "<|im_end|>")" = 2 && test "$(tok_id sm/tokenizer.json "<|im_start|>")" = 1
'

test_expect_success 'icl-fmt -T chatml | icl-tok encode --parse-special -t sm: responses end with <|im_end|> (2), the header says so' '
	icl-fmt -T chatml data.jsonl >train.jsonl &&
	icl-tok encode --parse-special -t sm train.jsonl >train.tok 2>err &&
	! grep -i "eos" err &&
	head -1 train.tok | grep -q " eos=2 " &&
	test $(tail -n +2 train.tok | wc -l) -eq 4 &&
	tail -n +2 train.tok | while IFS= read -r l; do case "$l" in *" 2") ;; *) echo "no EOS 2: $l"; exit 1 ;; esac; done
'

test_expect_success 'icl-train -m sm takes those lines without an EOS warning' '
	icl-train -q -m sm -o run --lora-r 2 --max-steps 2 --batch-size 2 --seq-len 64 --threads 2 train.tok >m 2>err &&
	test $(wc -l <m) -eq 2 && ! grep -i "eos" err &&
	test -s run/adapter_model.safetensors &&
	cut -f1 train.tok >prompts.tok &&
	icl-gen -m sm --adapter run --ids --greedy -n 4 prompts.tok >out 2>err &&
	! grep -i "eos" err && test $(grep -vc "^#" out) -eq 4
'

test_expect_success 'icl-gen -m sm stops at <|im_end|>: greedy answers end with id 2, well before -n' '
	printf "%s\n" "{\"instruction\":\"Say hello.\",\"output\":\"Hello!\"}" \
		"{\"instruction\":\"What is the capital of France?\",\"output\":\"Paris.\"}" >two.jsonl &&
	icl-fmt -q --chat-template sm two.jsonl | icl-tok encode -t sm >two.tok &&
	cut -f1 two.tok | icl-gen -m sm --ids --greedy -n 60 --threads 2 >gen 2>err &&
	! grep -i "eos" err &&
	test $(grep -vc "^#" gen) -eq 2 &&
	grep -v "^#" gen | while IFS= read -r l; do
		g=${l##*	}; n=$(echo $g | wc -w)
		case "$g" in *" 2") ;; *) echo "does not end at 2: $g"; exit 1 ;; esac
		test $n -lt 60 || exit 1
		case " $g" in *" 2 "*) echo "2 inside: $g"; exit 1 ;; esac
	done
'

test_expect_success 'token lines from the tokenizer files alone (EOS <|im_start|>, 1): icl-train refuses, icl-gen warns' '
	mkdir toks && cp sm/tokenizer.json sm/tokenizer_config.json toks/ &&
	icl-tok encode -t toks train.jsonl >bad.tok &&
	head -1 bad.tok | grep -q " eos=1 " &&
	test_must_fail icl-train -q -m sm -o run2 --lora-r 2 --max-steps 1 bad.tok 2>err &&
	test_grep "the token lines end responses with EOS id 1 but the model stops generating at 2" err &&
	icl-gen -m sm --ids -n 1 bad.tok >/dev/null 2>err &&
	test_grep "EOS id 1, which the model does not stop at" err
'

test_done
