#!/bin/sh
# icl-tok against hostile tokenizer files and arguments (review findings).
. "$(dirname "$0")/lib.sh"

gzip -dc "$DATA/tok/gpt2.json.gz" >gpt2.json
echo '{"prompt":"Hello the world","response":" ok"}' >r.jsonl

# with_post JSON OUT: gpt2.json with its post_processor object replaced by JSON.
with_post() {
	awk -v pp="$1" '
		/^  "post_processor": \{/ { print "  \"post_processor\": " pp ","; skip = 1; next }
		skip && /^  \},?$/ { skip = 0; next }
		!skip' gpt2.json >"$2"
}

test_expect_success 'setup: with_post replaces the post_processor' '
	with_post "null" n.json && grep -q "\"post_processor\": null," n.json &&
	icl-tok encode -t n.json r.jsonl >out && test $(wc -l <out) -eq 2
'

test_expect_success 'TemplateProcessing ids out of range are errors, never wrapped' '
	for id in 4294967301 -7 1000000000000; do
		with_post "{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"pair\":[],\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[$id],\"tokens\":[\"<s>\"]}}}" tp.json
		if icl-tok encode -t tp.json r.jsonl >out 2>err; then exit 1; fi
		test_grep "tp.json: post_processor TemplateProcessing: special token <s> must have one id" err
		test ! -s out || exit 1
	done
'

test_expect_code 1 'BertProcessing without cls/sep is refused, not ignored' '
	with_post "{\"type\":\"BertProcessing\"}" bp.json &&
	icl-tok encode -t bp.json r.jsonl 2>err; rc=$?; test_grep "cls and sep" err; exit $rc
'

test_expect_code 1 'a Sequence post_processor without processors is refused' '
	with_post "{\"type\":\"Sequence\",\"processors\":5}" sq.json &&
	icl-tok encode -t sq.json r.jsonl 2>err; rc=$?; test_grep "processors" err; exit $rc
'

test_expect_code 1 'a truncated tokenizer_config.json is an error, not ignored' '
	mkdir -p d1 && cp gpt2.json d1/tokenizer.json && echo "{\"bos_token\":" >d1/tokenizer_config.json &&
	icl-tok encode -t d1 r.jsonl 2>err; rc=$?; test_grep "d1: tokenizer_config.json: line" err; exit $rc
'

test_expect_code 1 'generation_config.json ids are range-checked' '
	mkdir -p d2 && cp gpt2.json d2/tokenizer.json && echo "{\"bos_token_id\": 4294967301}" >d2/generation_config.json &&
	icl-tok encode -t d2 r.jsonl 2>err; rc=$?; test_grep "bos_token_id must be an id" err; exit $rc
'

test_expect_success 'generation_config.json pad_token_id -1 (early Llama conversions) means none' '
	mkdir -p d3 && cp gpt2.json d3/tokenizer.json && echo "{\"pad_token_id\": -1}" >d3/generation_config.json &&
	icl-tok encode -t d3 r.jsonl >out && head -1 out | grep -q " pad=-1 "
'

test_expect_success 'train: a repeated --special is kept once, as BpeTrainer does' '
	gzip -dc "$DATA/tok/corpus.txt.gz" | head -2000 >c.txt &&
	icl-tok train --vocab-size 300 --special "<s>" --special "<s>" -o t.json c.txt 2>err &&
	test_grep "t.json: 43 merges, vocabulary 300" err &&
	icl-tok train -q --vocab-size 300 -o q.json c.txt 2>err && test ! -s err && test -s q.json &&
	test $(grep -c "\"content\": \"<s>\"" t.json) -eq 1 &&
	grep -q "\"<s>\": 0," t.json && grep -q "\"!\": 1," t.json
'

test_expect_success 'train: the vocabulary size reported is the one written' '
	printf "a\n" | icl-tok train --vocab-size 300 -o e.json 2>err &&
	test_grep "e.json: 0 merges, vocabulary 256" err
'

test_expect_success 'train: a failed run leaves no -o file' '
	printf "ok\n\377\n" >bad.txt &&
	if icl-tok train --vocab-size 300 -o t2.json bad.txt 2>err; then exit 1; fi
	test_grep "bad.txt:2: invalid UTF-8" err && ls >ls.txt && if grep "^t2\\.json" ls.txt; then exit 1; fi
'

if test -w /dev/full; then
test_expect_success 'write errors: exit 1 and one message naming the output' '
	if icl-tok train --vocab-size 300 -o /dev/full c.txt 2>err; then exit 1; fi
	echo "icl-tok: /dev/full: write error: No space left on device" >want && test_cmp want err &&
	icl-tok encode -t gpt2.json r.jsonl >r.tok &&
	if icl-tok decode -t gpt2.json r.tok >/dev/full 2>err; then exit 1; fi
	echo "icl-tok: <stdout>: write error: No space left on device" >want && test_cmp want err
'
fi

test_expect_success 'special-token text kept as text is counted on stderr' '
	printf "%s\n" "{\"text\":\"a <|endoftext|> b\"}" "{\"text\":\"plain\"}" \
		"{\"prompt\":\"<|endoftext|>\",\"response\":\"x\"}" >sp.jsonl &&
	icl-tok encode -t gpt2.json sp.jsonl >sp.tok 2>err &&
	echo "icl-tok: 2 records contain special-token text such as \"<|endoftext|>\", encoded as plain text; if a template wrote it, use --parse-special" >want &&
	test_cmp want err && test $(wc -l <sp.tok) -eq 4 &&
	icl-tok encode -t gpt2.json --parse-special sp.jsonl >sp2.tok 2>err && test ! -s err &&
	sed -n 4p sp2.tok | grep -q "^50256	87 50256$"
'

test_expect_success 'added token ids must be the ones tokenizers would assign' '
	sed "s|\"added_tokens\": \[|\"added_tokens\": [{\"id\": ID, \"content\": \"<x>\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true},|" gpt2.json >ax.json &&
	sed "s/\"id\": ID,/\"id\": 60000,/" ax.json >a1.json &&
	if icl-tok encode -t a1.json r.jsonl >out 2>err; then exit 1; fi
	test_grep "a1.json: added_tokens\[0\] \"<x>\" has id 60000, but Hugging Face tokenizers would give it id 50257" err &&
	sed "s/\"id\": ID,/\"id\": 50257,/" ax.json >a2.json &&
	echo "{\"text\":\"a<x>\"}" | icl-tok encode --parse-special -t a2.json >out &&
	tail -1 out | grep -q "^	64 50257 50256$"
'

test_expect_success 'a data file given as the tokenizer is called not a tokenizer, with what -t takes' '
	printf "instruction,output\nq,a\n" >data.csv &&
	printf "%s\n" "{\"prompt\":\"a\",\"response\":\"b\"}" "{\"prompt\":\"c\",\"response\":\"d\"}" >d.jsonl &&
	echo "{\"vocab\": {}}" >notok.json &&
	for f in data.csv d.jsonl notok.json; do
		rc=0; icl-tok encode -t $f d.jsonl >out 2>err || rc=$?
		test $rc -eq 1 && test_grep "^icl-tok: $f: not a tokenizer: .*; give a tokenizer.json, a model folder holding one, or a GGUF file$" err || exit 1
	done &&
	icl-tok encode -t data.csv d.jsonl 2>err >out || true; test_grep "data.csv: not a tokenizer: it looks like CSV, TSV or plain text;" err &&
	icl-tok encode -t d.jsonl d.jsonl 2>err >out || true; test_grep "d.jsonl: not a tokenizer: it looks like JSON Lines records;" err &&
	icl-tok encode -t notok.json d.jsonl 2>err >out || true; test_grep "notok.json: not a tokenizer: a JSON file without tokenizer.json.s \"model\" object;" err &&
	echo "{\"model\": " >broken.json &&
	{ icl-tok encode -t broken.json d.jsonl 2>err >out || true; } && test_grep "broken.json: line 2: " err
'

test_expect_success '-t given token lines, a model file or a config says what it looks like and what to give' '
	printf "%s\n" "{\"prompt\":\"a\",\"response\":\"b\"}" >one.jsonl &&
	icl-tok encode -t gpt2.json one.jsonl >one.tok &&
	test_must_fail icl-tok encode -t one.tok one.jsonl 2>err >out &&
	echo "icl-tok: one.tok: not a tokenizer: it looks like token lines (icl-tok encode'"'"'s output); give a tokenizer.json, a model folder holding one, or a GGUF file" >want &&
	test_cmp want err &&
	mkdir -p mf && cp "$DATA/model/gpt2-tiny/model/"* mf/ &&
	test_must_fail icl-tok encode -t mf/model.safetensors one.jsonl 2>err >out &&
	test_grep "^icl-tok: mf/model.safetensors: not a tokenizer: it looks like model weights (safetensors); give a tokenizer.json, a model folder holding one" err &&
	cp gpt2.json mf/tokenizer.json &&
	test_must_fail icl-tok decode -t mf/model.safetensors one.tok 2>err >out &&
	echo "icl-tok: mf/model.safetensors: not a tokenizer: it looks like model weights (safetensors); give its folder mf, which holds a tokenizer.json" >want &&
	test_cmp want err &&
	test_must_fail icl-tok encode -t mf/config.json one.jsonl 2>err >out &&
	test_grep "^icl-tok: mf/config.json: not a tokenizer: it looks like a model.s config.json; give its folder mf, which holds" err &&
	icl-tok encode -t mf one.jsonl >out && test_grep " source=mf$" out
'

test_expect_success 'encode given token lines or CSV, decode given records: what they are and what to run' '
	test_must_fail icl-tok encode -t gpt2.json one.tok 2>err >out &&
	test_grep "^icl-tok: one.tok:1: .* (these are token lines, from icl-tok encode: encoded already; icl-tok decode -t TOKENIZER turns them back into records)$" err &&
	test_must_fail icl-tok encode -t gpt2.json one.jsonl data.csv 2>err >out &&
	test_grep "^icl-tok: data.csv:1: .* (icl-tok encode reads JSON Lines records, .*: icl-fmt makes them from CSV, TSV or JSON data)$" err &&
	echo "{\"instruction\":\"Hi\",\"output\":\"Hello\"}" >rows.jsonl &&
	test_must_fail icl-tok encode -t gpt2.json rows.jsonl 2>err >out &&
	test_grep "^icl-tok: rows.jsonl:1: record has neither prompt/response nor text (icl-fmt makes such records from rows such as instruction/output)$" err &&
	printf "{\"prompt\":\"a\",\"response\":\"b\"}\nnot json\n" >late.jsonl &&
	test_must_fail icl-tok encode -t gpt2.json late.jsonl 2>err >out &&
	test_grep "^icl-tok: late.jsonl:2: bad JSON" err && ! grep -q "icl-fmt\|token lines" err &&
	test_must_fail icl-tok decode -t gpt2.json one.jsonl 2>err >out &&
	echo "icl-tok: one.jsonl:1: a JSON record, not token ids: records are text already (decode reads token lines, icl-tok encode'"'"'s output)" >want &&
	test_cmp want err &&
	test_must_fail icl-tok decode -t gpt2.json <one.jsonl 2>err >out &&
	test_grep "^icl-tok: <stdin>:1: a JSON record, not token ids: records are text already" err
'

if test -r /dev/zero; then
test_expect_success 'a tokenizer that never ends (/dev/zero) is refused at the size cap, not read forever' '
	rc=0; icl-tok encode -t /dev/zero </dev/null >out 2>err || rc=$?
	test $rc -eq 1 && test_grep "^icl-tok: /dev/zero: larger than 536870912 bytes" err
'
else
test_skip 'a tokenizer that never ends (/dev/zero) is refused at the size cap' 'no /dev/zero'
fi

# ulimit -v bounds what may be allocated (not under ASan, which reserves terabytes of address space)
vlimit() { [ "${ICL_SANITIZE:-0}" = 1 ] || ulimit -v 2000000; }
test_expect_success 'a Replace normalizer that grows the text without bound is an error naming the tokenizer and line' '
	python3 -c "
import json
t = json.load(open(\"$DATA/tok/bytelevel-512.json\"))
t[\"normalizer\"] = {\"type\": \"Replace\", \"pattern\": {\"String\": \"a\"}, \"content\": \"a\" * 20000}
json.dump(t, open(\"grow.json\", \"w\"))
t[\"normalizer\"][\"content\"] = \"aa\"
json.dump(t, open(\"grow2.json\", \"w\"))
print(json.dumps({\"prompt\": \"hi\", \"response\": \"b\"}))
print(json.dumps({\"prompt\": \"a\" * 200000, \"response\": \"b\"}))
" >longa.jsonl &&
	(vlimit; test_must_fail icl-tok encode -t grow.json longa.jsonl >out 2>err) &&
	echo "icl-tok: longa.jsonl:2: \"prompt\": grow.json: normalizer: it makes the text longer than 16 times its input plus 64 KiB (3265536 bytes)" >want &&
	test_cmp want err &&
	icl-tok encode -t grow2.json longa.jsonl >out && test $(wc -l <out) -eq 3
'

test_expect_success 'a vocabulary id far beyond the entries is refused (it would size a model by it)' '
	python3 -c "
import json
t = json.load(open(\"$DATA/tok/bytelevel-512.json\"))
t[\"model\"][\"vocab\"][\"zzz\"] = 16777215
json.dump(t, open(\"gap.json\", \"w\"))
t[\"model\"][\"vocab\"][\"zzz\"] = 2 * 514 + 1023
json.dump(t, open(\"gap2.json\", \"w\"))
" &&
	test_must_fail icl-tok encode -t gap.json r.jsonl 2>err &&
	echo "icl-tok: gap.json: vocab: id 16777215 is far beyond the 514 tokens listed (ids must be below twice their count plus 1024)" >want &&
	test_cmp want err &&
	icl-tok encode -t gap2.json r.jsonl >out && test_grep " vocab_size=2052 " out
'

# -t naming what is no tokenizer.json: the reader's reason, not strerror's
# ("File too large", "Invalid argument"); a file over the cap (a sparse
# 10 GB one) refused from its size, not read up to the 512 MiB cap
test_expect_success '-t a FIFO, a sparse 10 GB file: said plainly, nothing big read' '
	mkfifo fifo &&
	test_must_fail icl-tok encode -t fifo r.jsonl 2>err &&
	test_grep "fifo: not a regular file (a FIFO with nothing written to it)" err &&
	truncate -s 10G sparse &&
	python3 -c "
import resource, subprocess
r = subprocess.run([\"icl-tok\", \"encode\", \"-t\", \"sparse\", \"r.jsonl\"], capture_output=True, text=True)
assert r.returncode == 1, r
assert \"sparse: larger than 536870912 bytes\" in r.stderr, r.stderr
kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
assert kb < 100000, kb
"
'

test_expect_success 'a regex that gives up names the tokenizer and its component: a Split pre-tokenizer (encode), a Replace decoder (decode)' '
	printf "%s\n" "{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(a+)+\$\"},\"behavior\":\"Isolated\",\"invert\":false},\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Fuse\"},{\"type\":\"Replace\",\"pattern\":{\"Regex\":\"(a+)+\$\"},\"content\":\"x\"}]},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"x\":2,\"aa\":3},\"merges\":[\"a a\"]}}" >cat.json &&
	printf "{\"text\":\"%s\"}\n" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab" >cat.jsonl &&
	test_must_fail icl-tok encode -t cat.json cat.jsonl >/dev/null 2>err &&
	test_grep "cat.jsonl:1: .*cat.json: pre-tokenizer Split regex failed" err &&
	printf "3 3 3 3 3 3 3 3 3 3 3 3 3 3 3 3 3 3 3 3 3 3 3 3 1\n" >cat.ids &&
	test_must_fail icl-tok decode -t cat.json cat.ids >/dev/null 2>err &&
	test_grep "cat.ids:1: cat.json: decoder Replace regex failed" err
'

test_done
