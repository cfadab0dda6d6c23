#!/bin/sh
# What a new user gets wrong, answered in one clear line naming the thing:
# an empty option value, an empty file name, a folder where a file is
# expected, a folder without a tokenizer; -q silences notices, not errors.
. "$(dirname "$0")/lib.sh"
LLAMA="$DATA/model/llama-tiny/model"
Q="$DATA/gguf/llama-tiny.q4_1.gguf"
TOK="$DATA/tok/bytelevel-512.json"
mkdir adir
printf '1 2 3\t4 5\n' >ids.tok
printf 'instruction,output\na,b\n' >d.csv
echo '{"completion":"a","response":"a"}' >pred.jsonl

# fails CODE LINE CMD...: exit CODE, nothing on stdout, stderr's first line
# is LINE and (CODE 1) the only one
fails() {
	code=$1 line=$2; shift 2
	rc=0; "$@" </dev/null >out 2>err || rc=$?
	test $rc -eq "$code" || { echo "exit $rc, wanted $code: $*"; cat err; return 1; }
	test ! -s out || { echo "stdout: $*"; cat out; return 1; }
	echo "$line" >want && head -1 err >got && test_cmp want got &&
	{ test "$code" -ne 1 || test $(wc -l <err) -eq 1 || { cat err; return 1; }; }
}

test_expect_success 'an empty option value is a usage error naming the option' '
	fails 2 "icl-gen: option '"'"'--chat-template'"'"' has an empty value ('"'"''"'"')" \
		icl-gen -m "$LLAMA" --chat-template "" &&
	fails 2 "icl-gen: option '"'"'--model'"'"' has an empty value ('"'"''"'"')" icl-gen -m "" &&
	fails 2 "icl-eval: option '"'"'--per-example'"'"' has an empty value ('"'"''"'"')" icl-eval -e "" pred.jsonl &&
	fails 2 "icl-eval: option '"'"'--extract'"'"' has an empty value ('"'"''"'"')" icl-eval --extract= pred.jsonl &&
	fails 2 "icl-fmt: option '"'"'--output'"'"' has an empty value ('"'"''"'"')" icl-fmt -o "" d.csv &&
	fails 2 "icl-tok: option '"'"'--tokenizer'"'"' has an empty value ('"'"''"'"')" icl-tok encode -t "" &&
	fails 2 "icl-train: option '"'"'--output-dir'"'"' has an empty value ('"'"''"'"')" icl-train -m "$LLAMA" -o "" ids.tok &&
	fails 2 "icl-convert: option '"'"'--base'"'"' has an empty value ('"'"''"'"')" icl-convert --base "" a b &&
	test_must_fail icl-eval -M "" pred.jsonl 2>err && test_grep "option .--metrics. has an empty value" err
'

test_expect_success 'an empty file name is named as such' '
	fails 1 "icl-fmt: '"'"''"'"': an empty file name" icl-fmt "" &&
	fails 1 "icl-eval: '"'"''"'"': an empty file name" icl-eval "" &&
	fails 1 "icl-eval: '"'"''"'"': an empty file name" icl-eval -q -m "$LLAMA" "" &&
	fails 1 "icl-gen: '"'"''"'"': an empty file name" icl-gen -q --ids -m "$LLAMA" "" &&
	fails 1 "icl-train: '"'"''"'"': an empty file name" icl-train -q -m "$LLAMA" -o run "" &&
	! test -e run
'

test_expect_success 'a folder where a file is expected is named as such' '
	fails 1 "icl-fmt: adir: is a folder, not a file" icl-fmt adir &&
	fails 1 "icl-eval: adir: is a folder, not a file" icl-eval adir &&
	fails 1 "icl-eval: adir: is a folder, not a file" icl-eval -q -m "$LLAMA" adir &&
	fails 1 "icl-gen: adir: is a folder, not a file" icl-gen -q --ids -m "$LLAMA" adir &&
	fails 1 "icl-train: adir: is a folder, not a file" icl-train -q -m "$LLAMA" -o run adir &&
	! test -e run &&
	rc=0; icl-tok encode -t "$TOK" adir >out 2>err || rc=$?; test $rc -eq 1 && test_grep "^icl-tok: adir: is a folder, not a file$" err
'

test_expect_success 'a folder without tokenizer.json is named once' '
	fails 1 "icl-tok: adir/tokenizer.json: No such file or directory" icl-tok encode -t adir ids.tok &&
	fails 1 "icl-tok: nosuch.json: No such file or directory" icl-tok encode -t nosuch.json ids.tok
'

test_expect_success 'icl-convert: a folder that is not a model is named once' '
	fails 1 "icl-convert: adir/config.json: No such file or directory" icl-convert adir out.gguf &&
	! test -e out.gguf
'

test_expect_success 'a missing model is named, not its config.json' '
	fails 1 "icl-gen: nosuch: No such file or directory (want a model folder or a GGUF file)" icl-gen -m nosuch &&
	fails 1 "icl-eval: nosuch: No such file or directory (want a model folder or a GGUF file)" icl-eval -m nosuch ids.tok &&
	fails 1 "icl-convert: nosuch: No such file or directory (want a model folder or a GGUF file)" \
		icl-convert nosuch out.gguf &&
	fails 1 "icl-train: nosuch: No such file or directory (want a model folder or a GGUF file)" \
		icl-train -q -m nosuch -o run ids.tok &&
	! test -e run
'

test_expect_success 'icl-tok: an option of another command is refused, not ignored' '
	echo "{\"prompt\":\"a\",\"response\":\"b\"}" >pr.jsonl &&
	fails 2 "icl-tok: --output applies to train, not encode (encode and decode write to standard output: > FILE)" \
		icl-tok encode -t "$TOK" -o out.tok pr.jsonl &&
	! test -e out.tok &&
	fails 2 "icl-tok: --threads applies to encode, not decode" icl-tok decode -t "$TOK" --threads 2 ids.tok &&
	fails 2 "icl-tok: --tokenizer applies to encode and decode, not train" icl-tok train -t "$TOK" -o t.json pr.jsonl &&
	fails 2 "icl-tok: --vocab-size applies to train, not encode" icl-tok encode --vocab-size 300 -t "$TOK" pr.jsonl &&
	icl-tok encode -q -t "$TOK" pr.jsonl >a.tok && icl-tok decode -q -t "$TOK" a.tok >back.jsonl &&
	test_cmp pr.jsonl back.jsonl
'

test_expect_success 'icl-gen: sampler values out of range name the option and its range' '
	fails 2 "icl-gen: --temperature '"'"'1e308'"'"': want a number in [0, 3.40282e+38]" \
		icl-gen --ids -m "$LLAMA" --temperature 1e308 ids.tok &&
	fails 2 "icl-gen: --temperature '"'"'-1'"'"': want a number in [0, 3.40282e+38]" \
		icl-gen --ids -m "$LLAMA" --temperature -1 ids.tok &&
	fails 2 "icl-gen: --top-p '"'"'2'"'"': want a number in [0, 1]" icl-gen --ids -m "$LLAMA" --top-p 2 ids.tok &&
	fails 2 "icl-gen: --repetition-penalty '"'"'0'"'"': want a number in (0, 3.40282e+38]" \
		icl-gen --ids -m "$LLAMA" --repetition-penalty 0 ids.tok
'

test_expect_success '--adapter given a folder that is not one, or nothing, or a file (a GGUF, a file of the folder), names it' '
	fails 1 "icl-eval: adir: not a LoRA adapter folder (no adapter_config.json)" \
		icl-eval -m "$LLAMA" --adapter adir ids.tok &&
	fails 1 "icl-gen: nosuch: no such adapter folder" \
		icl-gen --ids -m "$LLAMA" --adapter nosuch ids.tok &&
	fails 1 "icl-eval: ids.tok: not a LoRA adapter folder (a file)" icl-eval -m "$LLAMA" --adapter ids.tok ids.tok &&
	printf "GGUF\003\000\000\000" >a.gguf &&
	fails 1 "icl-gen: a.gguf: a GGUF file, not a LoRA adapter folder: adapters are read in PEFT'"'"'s format (a folder of adapter_config.json and adapter_model.safetensors); a llama.cpp LoRA GGUF is written from one (icl-convert), not read" \
		icl-gen --ids -m "$LLAMA" --adapter a.gguf ids.tok &&
	mkdir -p cdir && echo "{\"peft_type\": \"LORA\"}" >cdir/adapter_config.json &&
	fails 1 "icl-eval: cdir/adapter_config.json: a file of a LoRA adapter folder: give the folder that holds it" \
		icl-eval -m "$LLAMA" --adapter cdir/adapter_config.json ids.tok
'

test_expect_success '--adapter DIR:SCALE with a scale that is not a number is a usage error naming it' '
	fails 2 "icl-gen: --adapter adir:abc: the scale '"'"'abc'"'"' is not a number (DIR:SCALE, e.g. adir:0.5)" \
		icl-gen --ids -m "$LLAMA" --adapter adir:abc ids.tok &&
	fails 2 "icl-eval: --adapter adir:1,5: the scale '"'"'1,5'"'"' is not a number (DIR:SCALE, e.g. adir:0.5)" \
		icl-eval -m "$LLAMA" --adapter adir:1,5 ids.tok &&
	fails 1 "icl-gen: nosuch:abc: no such adapter folder" icl-gen --ids -m "$LLAMA" --adapter nosuch:abc ids.tok
'

test_expect_success '-q silences how the model is loaded (icl-gen, icl-eval), not errors' '
	icl-eval -m "$Q" ids.tok >/dev/null 2>err && test_grep "quantized blocks" err &&
	icl-eval -q -m "$Q" ids.tok >/dev/null 2>err && test ! -s err &&
	icl-gen --ids -n 2 -m "$Q" ids.tok >/dev/null 2>err && test_grep "quantized blocks" err &&
	icl-gen -q --ids -n 2 -m "$Q" ids.tok >/dev/null 2>err && test ! -s err &&
	fails 1 "icl-gen: nosuch.tok: No such file or directory" icl-gen -q --ids -m "$Q" nosuch.tok
'

# an endless line (/dev/zero as the input): getline grew until an
# allocation failed, then returned it as the end of input: all the memory,
# then status 0 and "no record" or nothing said
# (under ASan reading 256 MiB takes minutes a program, icl-fmt's CSV parse
# of it more than two: the sanitizer build checks the line reader's
# icl-eval alone; the plain build all six)
test_expect_success 'an endless line is an error at 256 MiB naming the line, not all the memory' '
	mkdir c && cp "$DATA"/model/stories260K/model/* c/ && cp "$TOK" c/tokenizer.json &&
	python3 -c "
import os, resource, subprocess
san = os.environ.get(\"ICL_SANITIZE\", \"0\") == \"1\"
for cmd, msg in (([\"icl-eval\"], \"icl-eval: <stdin>:1: a line longer than 256 MiB\n\"),
                 ([\"icl-gen\", \"-m\", \"c\", \"-n\", \"2\"], \"icl-gen: <stdin>:1: a line longer than 256 MiB\n\"),
                 ([\"icl-gen\", \"-m\", \"c\", \"--ids\"], \"icl-gen: <stdin>:1: a line longer than 256 MiB\n\"),
                 ([\"icl-tok\", \"encode\", \"-t\", \"c\"], \"icl-tok: <stdin>:1: a line longer than 256 MiB\n\"),
                 ([\"icl-tok\", \"decode\", \"-t\", \"c\"], \"icl-tok: <stdin>:1: a line longer than 256 MiB\n\"),
                 ([\"icl-fmt\"], \"icl-fmt: <stdin>: a line longer than 256 MiB\n\")):
    if san and cmd[0] != \"icl-eval\":
        continue
    r = subprocess.run([\"timeout\", \"300\" if san else \"120\"] + cmd, stdin=open(\"/dev/zero\"),
                       capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr == msg, (cmd, r)
    kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    assert kb < 1500000, (cmd, kb)
"
'

test_done
