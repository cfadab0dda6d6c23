#!/bin/sh
# Issue 18's hostile-input defects 7, 10 and 12 (the rest): -o onto a
# symbolic link writes the file it points to; a FIFO where a file is
# expected is an error, never a hang; an unreadable tokenizer.json is not
# "missing"; messages that say what is wrong (BOM, CRLF, JSON records given
# as token lines, a mistyped template placeholder, a --map key no record has;
# a tokenizer.json, config.json, weights or data given as the model).
. "$(dirname "$0")/lib.sh"
LLAMA="$DATA/model/llama-tiny/model"
# code_is CODE COMMAND...: COMMAND exits with CODE
code_is() { want=$1; shift; rc=0; "$@" || rc=$?; test "$rc" -eq "$want" || { echo "exit $rc, wanted $want"; return 1; }; }
printf 'hello world\nhello there\n' >c.txt
printf '{"instruction":"Say hi","output":"hi"}\n' >i.jsonl
awk 'BEGIN { srand(7); for (e = 0; e < 8; e++) { s = ""; for (i = 0; i < 6; i++) s = s (i == 0 ? "" : i == 3 ? "\t" : " ") int(rand() * 96); print s } }' >rand.tok

test_expect_success '-o onto a symbolic link writes its target (mode kept) and keeps the link' '
	echo old >target.json && chmod 600 target.json && ln -s target.json link.json &&
	icl-tok train --vocab-size 300 -o link.json c.txt 2>err &&
	test -L link.json && test_grep "\"model\"" target.json &&
	test "$(stat -c %a target.json)" = 600 &&
	mkdir sub && ln -s sub/made.jsonl dangling.jsonl &&
	icl-fmt -o dangling.jsonl i.jsonl &&
	test -L dangling.jsonl && test_grep "Say hi" sub/made.jsonl
'

if command -v mkfifo >/dev/null 2>&1; then
test_expect_success 'a FIFO as a template or tokenizer_config.json is an error at once, not a hang' '
	mkfifo tf &&
	code_is 2 timeout 60 icl-fmt -T tf i.jsonl 2>err &&
	test_grep "icl-fmt: tf: not a regular file" err &&
	mkdir m && cp "$DATA/tok/bytelevel-512.json" m/tokenizer.json && mkfifo m/tokenizer_config.json &&
	code_is 1 timeout 60 icl-tok encode -t m i.jsonl 2>err &&
	test_grep "m/tokenizer_config.json: not a regular file" err
'
else
test_skip 'a FIFO as a template or tokenizer_config.json is an error' 'no mkfifo'
fi

test_expect_success 'a tokenizer.json that cannot be read is an error, not a missing file' '
	mkdir md && cp "$LLAMA"/* md/ && mkdir md/tokenizer.json &&
	code_is 1 icl-train -q -m md -o out --max-steps 1 rand.tok 2>err &&
	test_grep "md/tokenizer.json: Is a directory" err && ! test -e out/model.safetensors &&
	code_is 1 icl-eval -m md rand.tok 2>err &&
	test_grep "^icl-eval: md/tokenizer.json: Is a directory$" err &&
	code_is 1 icl-gen -m md --ids -n 1 rand.tok 2>err &&
	test_grep "^icl-gen: md/tokenizer.json: Is a directory$" err
'

if [ "$(id -u)" != 0 ]; then
test_expect_success 'an unreadable tokenizer.json: Permission denied' '
	mkdir mp && cp "$LLAMA"/* mp/ && cp "$DATA/tok/bytelevel-512.json" mp/tokenizer.json && chmod 000 mp/tokenizer.json &&
	code_is 1 icl-eval -m mp rand.tok 2>err && test_grep "mp/tokenizer.json: Permission denied" err
'
else
test_skip 'an unreadable tokenizer.json: Permission denied' 'running as root'
fi

test_expect_success 'token lines: a BOM, CRLF and JSON records are named as such' '
	printf "\357\273\2771 2\t3\n" >bom.tok &&
	code_is 1 icl-train -q -m "$LLAMA" -o o1 --max-steps 1 bom.tok 2>err &&
	test_grep "bom.tok:1: starts with a UTF-8 byte order mark (BOM); token lines have none" err &&
	printf "1 2\t3\r\n" >crlf.tok &&
	code_is 1 icl-eval -m "$LLAMA" crlf.tok 2>err &&
	test_grep "crlf.tok:1: ends with a carriage return (CRLF line end)" err &&
	code_is 1 icl-eval -m "$LLAMA" i.jsonl 2>err &&
	test_grep "i.jsonl:1: a JSON record, not token ids: make token lines with icl-tok encode -t MODEL" err
'

test_expect_success 'JSON Lines: a BOM is named as such' '
	printf "\357\273\277{\"prompt\":\"a\",\"response\":\"b\"}\n" >bom.jsonl &&
	code_is 1 icl-tok encode -t "$DATA/tok/bytelevel-512.json" bom.jsonl 2>err >/dev/null &&
	test_grep "bom.jsonl:1: starts with a UTF-8 byte order mark (BOM); JSON Lines have none" err
'

test_expect_success 'a mistyped template placeholder is refused; other braces stay literal' '
	printf "Q: {intruction}\n%%%%\n{output}\n" >typo.txt &&
	code_is 2 icl-fmt -T typo.txt i.jsonl 2>err >fout &&
	test_grep "typo.txt:1: {intruction} is not a placeholder; did you mean {instruction}?" err && ! test -s fout &&
	printf "Q: {Input}\n%%%%\n{output}\n" >typo2.txt &&
	code_is 2 icl-fmt -T typo2.txt i.jsonl 2>err &&
	test_grep "did you mean {input}?" err &&
	printf "Q: {instruction} {name}\n%%%%\n{output}\n" >lit.txt &&
	icl-fmt -T lit.txt i.jsonl >fout &&
	test_grep "\"prompt\":\"Q: Say hi {name}\"" fout
'

test_expect_success '--map to a key no record has is an error, not empty fields' '
	printf "{\"q\":\"a\",\"a\":\"b\"}\n{\"q\":\"c\",\"a\":\"d\"}\n" >qa.jsonl &&
	code_is 1 icl-fmt --map instruction=question,output=a qa.jsonl >fout 2>err &&
	test_grep "map instruction=question: no record has the key .question." err && ! test -s fout &&
	code_is 1 icl-fmt --on-error skip --map prompt=question,response=a qa.jsonl >fout 2>err &&
	test_grep "map prompt=question: no record has the key" err &&
	icl-fmt --map instruction=q,output=a,input=context qa.jsonl >fout &&
	test $(wc -l <fout) -eq 2
'

test_expect_success 'a tokenizer.json, config.json, weights or data given as the model: what it looks like, what to give' '
	mkdir -p lm && cp "$LLAMA"/* lm/ && cp "$DATA/tok/bytelevel-512.json" lm/tokenizer.json &&
	NEITHER="neither a GGUF file nor a model folder (config.json and \*.safetensors)" &&
	test_must_fail icl-train -q -m lm/tokenizer.json -o out --max-steps 1 rand.tok 2>err >/dev/null &&
	test_grep "^icl-train: lm/tokenizer.json: $NEITHER; it looks like a tokenizer.json: give its folder lm$" err &&
	test_must_fail icl-gen -m lm/model.safetensors --ids rand.tok 2>err >/dev/null &&
	test_grep "^icl-gen: lm/model.safetensors: $NEITHER; it looks like model weights (safetensors): give its folder lm$" err &&
	test_must_fail icl-eval -m lm/config.json rand.tok 2>err >/dev/null &&
	test_grep "^icl-eval: lm/config.json: $NEITHER; it looks like a model.s config.json: give its folder lm$" err &&
	cp "$DATA/tok/bytelevel-512.json" alone.json &&
	test_must_fail icl-eval -m alone.json rand.tok 2>err >/dev/null &&
	test_grep "^icl-eval: alone.json: $NEITHER; it looks like a tokenizer.json: give the model folder that holds it$" err &&
	test_must_fail icl-train -q -m rand.tok -o out --max-steps 1 rand.tok 2>err >/dev/null &&
	test_grep "^icl-train: rand.tok: $NEITHER; it looks like token lines (icl-tok encode.s output), which is data, not a model$" err &&
	test ! -e out
'

test_done
