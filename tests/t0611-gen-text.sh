#!/bin/sh
# icl-gen on records: "completion" added and nothing else changed, prompts
# tokenized as icl-tok encode does, stop strings, streaming, batch and seed
# independence, usage errors, man page.  The model is stories260K (vocab 512)
# given the byte-level tokenizer bytelevel-512 (its own is lost): the text is
# gibberish but every mechanism is exercised.
. "$(dirname "$0")/lib.sh"
MAN="$TESTS_DIR/../man/man1/icl-gen.1"
mkdir m && cp "$DATA"/model/stories260K/model/* m/ && cp "$DATA/tok/bytelevel-512.json" m/tokenizer.json
# exits CODE COMMAND...: COMMAND ends with status CODE
exits() { want=$1; shift; rc=0; "$@" || rc=$?; test $rc -eq "$want"; }
json() { python3 -c 'import json,sys; [print(json.dumps(json.loads(l)[sys.argv[1]], ensure_ascii=False)) for l in sys.stdin]' "$1"; }

cat >in.jsonl <<'J'
{"id":1,"prompt":"Once upon a time","response":"ref","z":[1,2]}
{"prompt":"caf\u00e9 \u4e16\u754c","id":"b"}
{"id":3,"prompt":["Hi","Hello!","How are you?"]}
{"id":4,"prompt":["Hi","How are you?"],"response":["Hello!","ref"]}
J

test_expect_success 'the record gets "completion", every other key unchanged and in order' '
	icl-gen -m m -n 16 in.jsonl >out &&
	test $(wc -l <out) = 4 &&
	python3 -c "
import json
for a, b in zip(open(\"in.jsonl\"), open(\"out\")):
    a, b = json.loads(a), json.loads(b)
    assert list(b) == list(a) + [\"completion\"], (list(a), list(b))
    assert all(a[k] == b[k] for k in a)
    assert isinstance(b[\"completion\"], str) and len(b[\"completion\"]) > 0
"
'

test_expect_success 'a conversation renders alike from turns or from segments' '
	sed -n 3p out | json completion >c3 && sed -n 4p out | json completion >c4 && test_cmp c3 c4
'

test_expect_success 'prompts are tokenized as icl-tok encode does (encode | gen --ids | decode)' '
	sed -n "1p;4p" in.jsonl >pr.jsonl &&
	echo "{\"prompt\":\"caf\u00e9 \u4e16\u754c\",\"response\":\"\"}" >>pr.jsonl &&
	icl-tok encode -t m pr.jsonl >pr.tok 2>/dev/null &&
	icl-gen -m m -n 16 --ids pr.tok >gen.tok &&
	test_grep "^#icl-tokens" gen.tok &&
	icl-tok decode -t m gen.tok >dec.jsonl &&
	icl-gen -m m -n 16 pr.jsonl >gen.jsonl &&
	python3 -c "
import json
for a, b in zip(open(\"dec.jsonl\"), open(\"gen.jsonl\")):
    r = json.loads(a)[\"response\"]
    r = r[-1] if isinstance(r, list) else r
    assert r == json.loads(b)[\"completion\"], (r, b)
" &&
	test $(wc -l <gen.jsonl) = 3
'

test_expect_success 'the same completions at any batch size, with sampling' '
	icl-gen -m m -n 16 -b 1 --temperature 1.2 --seed 3 in.jsonl >s1 &&
	icl-gen -m m -n 16 -b 3 --temperature 1.2 --seed 3 in.jsonl >s3 &&
	test_cmp s1 s3 && test_must_fail cmp -s s1 out
'

test_expect_success '--stop ends the completion before the stop string' '
	json completion <out | head -1 | python3 -c "import json,sys; print(json.loads(sys.stdin.read())[3:7])" >stopstr &&
	head -1 in.jsonl | icl-gen -m m -n 16 --stop "$(cat stopstr)" --stop "not there" >st &&
	json completion <st >got &&
	json completion <out | head -1 | python3 -c "import json,sys; c=json.loads(sys.stdin.read()); print(json.dumps(c[:c.index(open(\"stopstr\").read().rstrip(\"\\n\"))], ensure_ascii=False))" >want &&
	test_cmp want got
'

test_expect_success '--stream writes the same text as it is generated' '
	icl-gen -m m -n 16 --stream in.jsonl >stream &&
	python3 -c "
import json
want = \"\".join(json.loads(l)[\"completion\"] + \"\\n\\n\" for l in open(\"out\"))
got = open(\"stream\", encoding=\"utf-8\").read()
assert got == want, (got, want)
"
'

test_expect_code 1 'a record without a prompt names its line' '
	printf "{\"prompt\":\"a\"}\n{\"text\":\"b\"}\n" | icl-gen -m m -n 2 2>err; rc=$?
	grep -q "<stdin>:2: no \"prompt\"" err || rc=99
	exit $rc
'

test_expect_code 1 'an even number of segments without responses is an error' '
	echo "{\"prompt\":[\"a\",\"b\"]}" | icl-gen -m m -n 2 2>err; rc=$?
	grep -q "odd" err || rc=99
	exit $rc
'

test_expect_code 1 'a model folder without tokenizer.json is an error in text mode' '
	echo "{\"prompt\":\"a\"}" | icl-gen -m "$DATA/model/stories260K/model" -n 2 2>err; rc=$?
	grep -q "tokenizer" err || rc=99
	exit $rc
'

test_expect_code 1 '--ids: a header naming another tokenizer is an error' '
	printf "#icl-tokens 1 fingerprint=xxh3:0123456789abcdef vocab_size=4096 bos=1 eos=2 pad=-1 source=x\n1 3000\n" |
		icl-gen -m m --ids -n 2 2>err; rc=$?
	grep -q "<stdin>:1: tokens were made by another tokenizer" err || rc=99
	exit $rc
'

test_expect_code 2 'no model is a usage error' 'icl-gen </dev/null'
test_expect_code 2 'a bad sampler value is a usage error' '
	icl-gen -m m --top-p 1.5 </dev/null 2>err; rc=$?
	grep -q "top-p" err || rc=99
	exit $rc
'
test_expect_code 2 '--stop with --ids is a usage error' 'icl-gen -m m --ids --stop x </dev/null'
test_expect_code 2 'a --stop that is not UTF-8 is a usage error (it could never match)' '
	icl-gen -m m --stop "$(printf "\377\376")" </dev/null 2>err; rc=$?
	grep -q "not UTF-8" err || rc=99
	exit $rc
'
test_expect_code 2 '--greedy with --temperature is a usage error' 'icl-gen -m m --greedy --temperature 1 </dev/null'

test_expect_success '--help teaches, --version names the program' '
	icl-gen --help >out && test_grep "^Usage: icl-gen" out && test_grep "^Examples*:" out &&
	icl-gen --version >v && test_grep "^icl-gen (icl) " v
'

test_expect_success 'input that is not records: token lines say --ids, CSV, text or rows say icl-fmt' '
	echo "{\"prompt\":\"Hi there\",\"response\":\"ok\"}" | icl-tok encode -t m >t.tok &&
	test_must_fail icl-gen -q -m m -n 2 t.tok >out 2>err && test ! -s out &&
	test_grep "t.tok:1: .*these are token lines, from icl-tok encode: give --ids" err &&
	icl-gen -q -m m -n 2 --ids t.tok >out && test $(wc -l <out) = 2 &&
	printf "1 2\t3\n" >bare.tok && test_must_fail icl-gen -q -m m -n 2 bare.tok 2>err &&
	test_grep "bare.tok:1: .*these are token lines, from icl-tok encode: give --ids" err &&
	printf "prompt,response\nHi,Hello\n" >d.csv && test_must_fail icl-gen -q -m m -n 2 d.csv 2>err &&
	test_grep "d.csv:1: .*icl-fmt makes them from CSV" err &&
	echo "{\"instruction\":\"Hi\",\"output\":\"Hello\"}" >rows.jsonl &&
	test_must_fail icl-gen -q -m m -n 2 rows.jsonl >out 2>err && test ! -s out &&
	echo "icl-gen: rows.jsonl:1: no \"prompt\" (nor \"messages\"): icl-gen reads records such as icl-fmt writes; icl-fmt makes them from rows such as instruction/output" >want &&
	test_cmp want err &&
	printf "{\"prompt\":\"a\"}\nfoo\n" >late.jsonl && test_must_fail icl-gen -q -m m -n 2 late.jsonl >/dev/null 2>err &&
	test_grep "late.jsonl:2: bad JSON" err && ! test_grep "icl-fmt\|--ids" err
'

test_expect_success 'a record with the output key already is an error, not overwritten; --output-key writes elsewhere' '
	printf "{\"prompt\":\"a\"}\n{\"prompt\":\"Hi\",\"completion\":\"ref\"}\n" >has.jsonl &&
	test_must_fail icl-gen -q -m m -n 2 has.jsonl >out 2>err &&
	test_grep "has.jsonl:2: the record has a \"completion\" key already, which the completion would overwrite" err &&
	test_grep "icl-fmt --map response=completion reads {\"prompt\", \"completion\"} records as prompt and response" err &&
	test ! -s out &&
	sed -n 2p has.jsonl | icl-fmt --map response=completion >fmt.out && test_grep "\"response\":\"ref\"" fmt.out &&
	icl-gen -q -m m -n 2 --output-key gen has.jsonl >out &&
	sed -n 2p out | json completion >c && echo "\"ref\"" >want && test_cmp want c &&
	python3 -c "
import json
for a, b in zip(open(\"has.jsonl\"), open(\"out\")):
    a, b = json.loads(a), json.loads(b)
    assert list(b) == list(a) + [\"gen\"] and all(a[k] == b[k] for k in a), (a, b)
" &&
	icl-gen -q -m m -n 2 in.jsonl | test_must_fail icl-gen -q -m m -n 2 >/dev/null 2>err &&
	test_grep "<stdin>:1: the record has a \"completion\" key" err &&
	printf "{\"prompt\":\"a\",\"sample\":7}\n" >s.jsonl &&
	test_must_fail icl-gen -q -m m -n 2 --temperature 1 --num-return-sequences 2 s.jsonl 2>err &&
	test_grep "s.jsonl:1: the record has a \"sample\" key already" err &&
	test_must_fail icl-gen -q -m m --output-key "" in.jsonl 2>err && test_grep "option .--output-key. has an empty value" err &&
	test_must_fail icl-gen -q -m m --ids --output-key x in.jsonl 2>err && test_grep "does not apply to --ids" err &&
	test_must_fail icl-gen -q -m m --temperature 1 --num-return-sequences 2 --output-key sample in.jsonl 2>err &&
	test_grep "choose another key" err &&
	for k in prompt messages response; do
		exits 2 icl-gen -q -m m --output-key $k in.jsonl 2>err && test_grep "reads \"$k\"" err || return 1
	done &&
	exits 2 icl-gen -q -m m --output-key "$(printf "\377")" in.jsonl >out 2>err &&
	test_grep "not UTF-8" err && test ! -s out &&
	exits 2 icl-gen -q -m m --stream --output-key x in.jsonl 2>err && test_grep "does not apply to --stream" err &&
	exits 2 icl-gen -q -m m --output pred.jsonl in.jsonl >out 2>err && test ! -s out &&
	test_grep "writes the records to standard output: redirect it" err && test ! -e pred.jsonl
'

test_expect_success 'a conflict late in a FILE is found before any generation (nothing written); on stdin, where it comes' '
	for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo "{\"prompt\":\"a$i\"}"; done >late.jsonl &&
	echo "{\"prompt\":\"b\",\"completion\":\"x\"}" >>late.jsonl &&
	exits 1 icl-gen -q -m m -n 2 -b 1 late.jsonl >out 2>err &&
	test ! -s out && test_grep "late.jsonl:13: the record has a \"completion\" key" err &&
	exits 1 icl-gen -q -m m -n 2 -b 1 <late.jsonl >out 2>err &&
	test $(wc -l <out) = 12 && test_grep "<stdin>:13: the record has a \"completion\" key" err &&
	echo "{\"text\":\"hi\",\"completion\":\"x\"}" >np.jsonl &&
	exits 1 icl-gen -q -m m -n 2 np.jsonl 2>err && test_grep "np.jsonl:1: no \"prompt\"" err
'

test_done
