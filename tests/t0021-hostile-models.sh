#!/bin/sh
# Hostile model folders and GGUF files: a config.json that claims a huge
# model fails on the tensors' shapes before anything of its size is
# allocated; control characters in a GGUF's metadata reach the terminal
# escaped; generation_config.json's eos ids are checked as config.json's.
. "$(dirname "$0")/lib.sh"
LLAMA="$DATA/model/llama-tiny/model"
printf '28 83 2 68\t4 32\n' >ok.tok

# bigcfg DIR KEY=VALUE...: a copy of llama-tiny with config.json edited
bigcfg() {
	d=$1; shift
	cp -r "$LLAMA" "$d" && chmod -R u+w "$d" &&
	python3 - "$d/config.json" "$@" <<-'PY'
	import json, sys
	c = json.load(open(sys.argv[1]))
	for kv in sys.argv[2:]:
	    k, v = kv.split("=")
	    c[k] = int(v)
	json.dump(c, open(sys.argv[1], "w"))
	PY
}

# ulimit -v bounds what may be allocated (ASan reserves terabytes of
# address space: there the limit is left out, the messages still checked)
vlimit() { [ "${ICL_SANITIZE:-0}" = 1 ] || ulimit -v 1000000; }
test_expect_success 'a config.json claiming a huge model fails on the shapes, not in an allocation' '
	bigcfg big hidden_size=8192 intermediate_size=65536 num_hidden_layers=1 head_dim=2048 &&
	bigcfg bigger hidden_size=65536 intermediate_size=262144 num_hidden_layers=4 head_dim=16384 &&
	echo "icl-eval: big/model.safetensors: tensor \"model.embed_tokens.weight\" has shape [96, 64], config.json needs [96, 8192]" >want &&
	(vlimit; test_must_fail icl-eval -q --threads 1 -m big ok.tok 2>err) && test_cmp want err &&
	echo "icl-gen: bigger/model.safetensors: tensor \"model.embed_tokens.weight\" has shape [96, 64], config.json needs [96, 65536]" >want &&
	(vlimit; test_must_fail icl-gen -q --threads 1 --ids -n 1 -m bigger ok.tok 2>err) && test_cmp want err &&
	(vlimit; test_must_fail icl-convert --threads 1 big out.gguf 2>err) && test_grep "config.json needs \[96, 8192\]" err
'

test_expect_success 'control characters from a GGUF are escaped in messages, UTF-8 kept' '
	python3 - "$DATA/gguf/llama-tiny.q4_1.gguf" <<-\PY &&
	import sys
	b = open(sys.argv[1], "rb").read()
	k = b"general.architecture"
	i = b.index(k) + len(k) + 4 + 8
	assert b[i - 8:i + 5] == b"\x05" + b"\0" * 7 + b"llama"
	open("esc.gguf", "wb").write(b[:i] + "\u00e9\r\n\x1b".encode() + b[i + 5:])
	PY
	test_must_fail icl-gen -q --ids -m esc.gguf ok.tok 2>err &&
	printf "icl-gen: esc.gguf: architecture \"\303\251\\\\x0d\\\\x0a\\\\x1b\" is not supported (llama, qwen2, gpt2)\n" >want &&
	test_cmp want err
'

test_expect_success 'an eos id of generation_config.json beyond the vocabulary is an error naming the file' '
	cp -r "$LLAMA" geos && chmod -R u+w geos &&
	echo "{\"eos_token_id\": [2, 5000]}" >geos/generation_config.json &&
	test_must_fail icl-gen -q --ids -n 2 -m geos ok.tok 2>err &&
	echo "icl-gen: geos/generation_config.json: eos_token_id 5000 is not below vocab_size 96 (config.json)" >want &&
	test_cmp want err &&
	echo "{\"eos_token_id\": 95}" >geos/generation_config.json &&
	icl-gen -q --ids -n 2 -m geos ok.tok >out && test $(wc -l <out) -eq 1
'

test_done
