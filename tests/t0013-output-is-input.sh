#!/bin/sh
# An output that is one of the inputs (same device and inode, also through
# another name) is refused before anything is written (issue 18, defect 8);
# icl-tok train --special must be a non-empty UTF-8 token (defect 9).
. "$(dirname "$0")/lib.sh"

# code_is CODE COMMAND...: COMMAND exits with CODE
code_is() { want=$1; shift; rc=0; "$@" || rc=$?; test "$rc" -eq "$want" || { echo "exit $rc, wanted $want"; return 1; }; }

printf '{"prompt":"a b","response":"c"}\n{"prompt":"d","response":"e f"}\n' >in.jsonl
printf 'hello world\nhello there\n' >c.txt
cp "$DATA/eval/sacrebleu.jsonl" a.jsonl

test_expect_success 'icl-tok train -o onto its input is refused; the input survives' '
	cp c.txt keep && ln -s c.txt link.txt &&
	code_is 2 icl-tok train --vocab-size 300 -o c.txt c.txt 2>err &&
	test_grep "c.txt is both an input and the output (-o): it would be destroyed" err &&
	code_is 2 icl-tok train --vocab-size 300 -o link.txt c.txt 2>err &&
	test_cmp keep c.txt &&
	icl-tok train --vocab-size 300 -o t.json c.txt && test -s t.json
'

test_expect_success 'icl-eval -e onto its input is refused' '
	cp a.jsonl keep &&
	code_is 2 icl-eval -M bleu -e a.jsonl a.jsonl 2>err &&
	test_grep "a.jsonl is both an input and the --per-example output: it would be destroyed" err &&
	test_cmp keep a.jsonl &&
	ln a.jsonl hard.jsonl &&
	code_is 2 icl-eval -M bleu -e hard.jsonl a.jsonl 2>err &&
	test_cmp keep a.jsonl
'

test_expect_success 'icl-fmt --split-out onto an input is refused (-o onto it stays an in-place rewrite)' '
	cp in.jsonl keep && ln -s in.jsonl in.link &&
	code_is 2 icl-fmt --split 0.5 --split-out in.jsonl in.jsonl 2>err >/dev/null &&
	test_grep "in.jsonl is both an input and --split-out: it would be destroyed" err &&
	code_is 2 icl-fmt --split 0.5 --split-out ./in.link in.jsonl 2>err >/dev/null &&
	test_cmp keep in.jsonl
'

test_expect_success 'icl-fmt -o onto an input, the --shots-from pool or standard input is refused' '
	printf "instruction,output\nq,a\n" >data.csv && cp data.csv keep.csv && ln -s data.csv data.link &&
	code_is 2 icl-fmt -q -o data.csv data.csv 2>err &&
	test_grep "data.csv is both an input and the output (-o): it would be destroyed" err &&
	code_is 2 icl-fmt -q -o data.link in.jsonl data.csv 2>err &&
	test_grep "data.csv is both an input and the output (-o)" err &&
	code_is 2 icl-fmt -q --shots 1 --shots-from data.csv -o ./data.csv in.jsonl 2>err &&
	test_grep "data.csv is both an input and the output (-o)" err &&
	code_is 2 icl-fmt -q -o data.csv <data.csv 2>err &&
	test_grep "standard input is both an input and the output (-o)" err &&
	code_is 2 icl-fmt -q -o data.csv - <data.csv 2>err &&
	test_cmp keep.csv data.csv &&
	icl-fmt -q -o out.jsonl data.csv && test -s out.jsonl
'

test_expect_success 'icl-convert onto an input file or folder (a base, --like, an adapter) is refused; the inputs survive' '
	cp -r "$DATA/model/llama-tiny/model" base && cp -r "$DATA/lora-llama-tiny/adapter" ad && cp -r base keep.base && cp -r ad keep.ad &&
	code_is 2 icl-convert -b base ad ad/adapter_model.safetensors 2>err &&
	test_grep "icl-convert: ad/adapter_model.safetensors is adapter_model.safetensors of the input folder ad: it would be destroyed" err &&
	code_is 2 icl-convert -b base ad base/config.json 2>err &&
	test_grep "icl-convert: base/config.json is config.json of the input folder base: it would be destroyed" err &&
	code_is 2 icl-convert --adapter ad base ad 2>err &&
	test_grep "icl-convert: ad is the input folder ad: it would be overwritten" err &&
	code_is 2 icl-convert --adapter ad base ./base/ 2>err &&
	test_grep "icl-convert: ./base/ is the input folder base: it would be overwritten" err &&
	ln -s base/model.safetensors link &&
	code_is 2 icl-convert base link 2>err &&
	test_grep "icl-convert: link is model.safetensors of the input folder base: it would be destroyed" err &&
	diff -r keep.base base && diff -r keep.ad ad &&
	icl-convert base base/m.gguf && icl-convert base base/m.gguf && cp base/m.gguf m.gguf &&
	code_is 2 icl-convert -b base/m.gguf ad base/m.gguf 2>err &&
	test_grep "icl-convert: base/m.gguf is both an input and the output: it would be destroyed" err &&
	code_is 2 icl-convert --like base/m.gguf base base/m.gguf 2>err &&
	code_is 2 icl-convert --adapter ad base/m.gguf ad 2>err &&
	cmp m.gguf base/m.gguf && diff -r keep.ad ad
'

test_expect_success 'icl-tok train --special refuses invalid UTF-8 and the empty token' '
	code_is 2 icl-tok train --vocab-size 300 --special "$(printf "\377")" -o s.json c.txt 2>err &&
	test_grep "special: not valid UTF-8" err &&
	code_is 2 icl-tok train --vocab-size 300 --special "" -o s.json c.txt 2>err &&
	test_grep "option .--special. has an empty value" err &&
	! test -e s.json
'

test_done
