#!/bin/sh
# icl-eval, predictions vs references: summary values, per-example lines,
# multiple references, labels, bad records.
. "$(dirname "$0")/lib.sh"

test_expect_success 'corpus BLEU equals sacreBLEU on its fixture' '
	icl-eval --metrics bleu "$DATA/eval/sacrebleu.jsonl" >out &&
	test_grep "\"bleu\":0.244447379217907," out &&
	test_grep "\"score\":24.4447379217907," out &&
	test_grep "\"counts\":\[18,11,5,1\],\"totals\":\[23,18,14,10\]" out &&
	test_grep "\"bp\":0.676174332531748,\"sys_len\":23,\"ref_len\":32" out &&
	test_grep "\"records\":6" out
'

test_expect_success 'per-example BLEU equals sacreBLEU sentence_bleu' '
	icl-eval -M bleu -e pe.jsonl <"$DATA/eval/sacrebleu.jsonl" >/dev/null &&
	cat >want <<-\EOF &&
	{"file":"<stdin>","line":1,"id":0,"bleu":0.321593510911901}
	{"file":"<stdin>","line":2,"id":1,"bleu":0.178669086374823}
	{"file":"<stdin>","line":3,"id":2,"bleu":1.0}
	{"file":"<stdin>","line":4,"id":3,"bleu":0.0}
	{"file":"<stdin>","line":5,"id":4,"bleu":0.307394076475632}
	{"file":"<stdin>","line":6,"id":5,"bleu":0.0183156388887342}
	EOF
	test_cmp want pe.jsonl
'

# Hand-computed: EM 1,0,1,1 -> 0.75; F1 1, 0.8 (P 1, R 4/6), 1, 1 -> 0.95;
# ROUGE-L keeps articles: [the cat]/[cat] 2/3, 8/11 (LCS 4 of 5 and 6),
# 0 (rouge-score: empty is 0), [an apple]/[apple] 2/3 -> 17/33.
cat >qa.jsonl <<\EOF
{"prompt":"q1","completion":"The Cat!","response":"cat"}
{"prompt":"q2","completion":"a quick brown fox jumped","response":"quick brown fox jumped over dogs"}

{"prompt":"q3","completion":"","response":""}
{"prompt":"q4","completion":"an Apple","response":["pear","apple."]}
EOF

test_expect_success 'EM, F1 and ROUGE-L by hand' '
	icl-eval -M em,f1,rougeL qa.jsonl >out &&
	echo "{\"records\":4,\"tokenize\":\"13a\",\"tokenize_auto\":true,\"exact_match\":0.75,\"f1\":0.95,\"rougeL\":0.515151515151515,\"skipped\":0}" >want &&
	test_cmp want out
'

test_expect_success 'per-example lines name file and line, keep the id' '
	icl-eval -M em,f1 --per-example pe qa.jsonl >/dev/null &&
	sed -n 2p pe >line2 &&
	echo "{\"file\":\"qa.jsonl\",\"line\":2,\"exact_match\":0.0,\"f1\":0.8}" >want &&
	test_cmp want line2 &&
	test $(wc -l <pe) -eq 4
'

test_expect_success 'several files are one corpus' '
	head -2 qa.jsonl >a.jsonl && tail -3 qa.jsonl >b.jsonl &&
	icl-eval -M em,f1,rougeL a.jsonl b.jsonl >out &&
	test_grep "\"records\":4,\"tokenize\":\"13a\",\"tokenize_auto\":true,\"exact_match\":0.75,\"f1\":0.95," out
'

cat >labels.jsonl <<\EOF
{"text":"great film","pred":"Positive\nbecause it is great","label":"positive"}
{"text":"awful","pred":"\n negative.","label":"Negative"}
{"text":"fine","pred":"positive","label":"negative"}
{"text":"meh","pred":"The neutral one","label":"neutral"}
EOF

test_expect_success 'accuracy on the first line, with a confusion matrix' '
	icl-eval --pred pred --ref label --metrics accuracy labels.jsonl >out &&
	echo "{\"records\":4,\"accuracy\":0.5,\"correct\":2,\"confusion\":{\"positive\":{\"positive\":1},\"negative\":{\"negative\":1,\"positive\":1},\"neutral\":{\"neutral one\":1}},\"skipped\":0}" >want &&
	test_cmp want out
'

test_expect_success 'no records: counts 0, means null, and a warning says so' '
	icl-eval </dev/null >out 2>err &&
	test_grep "^icl-eval: empty input, no records$" err &&
	icl-eval -q </dev/null >/dev/null 2>err && test ! -s err &&
	echo "{\"records\":0,\"tokenize\":\"13a\",\"tokenize_auto\":true,\"exact_match\":null,\"f1\":null,\"rougeL\":null,\"bleu\":null,\"bleu_detail\":{\"score\":0.0,\"counts\":[0,0,0,0],\"totals\":[0,0,0,0],\"precisions\":[0.0,0.0,0.0,0.0],\"bp\":1.0,\"sys_len\":0,\"ref_len\":0},\"skipped\":0}" >want &&
	test_cmp want out
'

cat >bad.jsonl <<\EOF
{"completion":"a","response":"a"}
{"completion":"b"}
{"completion":3,"response":"c"}
{"completion":"d","response":[]}
not json
{"completion":"e","response":["e",1]}
{"completion":"f","response":"f"}
EOF

test_expect_code 1 'a missing key stops the run, naming file and line' '
	icl-eval bad.jsonl >out 2>err; rc=$?
	grep -q "^icl-eval: bad.jsonl:2: no \"response\" key" err || rc=99
	test ! -s out || rc=98
	exit $rc
'

test_expect_success '--skip-bad skips and counts each kind of bad record' '
	icl-eval --skip-bad -M em bad.jsonl >out 2>err &&
	echo "{\"records\":2,\"exact_match\":1.0,\"skipped\":5}" >want &&
	test_cmp want out &&
	test_grep "bad.jsonl:3: \"completion\" is not a string (skipped)" err &&
	test_grep "bad.jsonl:4: \"response\" is not a string or a non-empty array" err &&
	test_grep "bad.jsonl:5:" err &&
	test_grep "bad.jsonl:6: \"response\"\[1\] is not a string" err &&
	test_grep "skipped 5 bad records" err
'

test_expect_code 1 'invalid UTF-8 is bad data' '
	printf "{\"completion\":\"caf\351\",\"response\":\"x\"}\n" >u.jsonl &&
	icl-eval u.jsonl 2>err; rc=$?
	grep -q "u.jsonl:1:.*UTF-8" err || rc=99
	exit $rc
'

test_expect_success 'Unicode: case folding, NBSP and Greek final sigma' '
	printf "%s\n" "{\"completion\":\"ΟΔΥΣΣΕΥΣ\u00a0Élan\",\"response\":\"οδυσσευς élan\"}" >g.jsonl &&
	icl-eval -M em g.jsonl >out &&
	test_grep "\"exact_match\":1.0" out
'

# icl-fmt --chat-template records end each response with the template's
# end-of-turn text; icl-gen stops before it (new-user trial: accuracy read 0)
cat >chat.jsonl <<'J'
{"prompt":["Review: great"],"response":["Positive<|im_end|>"],"chat":true,"label":"Positive","completion":"Positive"}
{"prompt":["Review: bad"],"response":["Negative<|im_end|>\n"],"chat":true,"label":"Negative","completion":"Positive"}
{"prompt":["Review: meh"],"response":["Negative<｜end▁of▁sentence｜>"],"chat":true,"label":"Negative","completion":"Negative"}
{"prompt":["Review: ok"],"response":["Positive</s>"],"chat":true,"label":"Positive","completion":"Positive</s>"}
J

test_expect_success '"chat": true records: a trailing end-of-turn text the completion lacks is not scored, and said' '
	icl-eval -M accuracy,em chat.jsonl >out 2>err &&
	test_grep "\"accuracy\":0.75,\"correct\":3," out && test_grep "\"exact_match\":0.75" out &&
	icl-eval -M accuracy -r label chat.jsonl >out 2>err2 && test_grep "\"accuracy\":0.5," out && test ! -s err2 &&
	test_grep "icl-eval: 3 references of \"chat\": true records scored without the end-of-turn text the completions stop before (<|im_end|>)" err &&
	icl-eval -q -M accuracy chat.jsonl >/dev/null 2>err && test ! -s err
'

test_expect_success 'without "chat": true they are scored as they are, with one warning saying what to do' '
	sed "s/\"chat\":true,//" chat.jsonl >plain.jsonl &&
	icl-eval -M accuracy plain.jsonl >out 2>err &&
	test_grep "\"accuracy\":0.25," out &&
	test $(wc -l <err) = 1 &&
	test_grep "icl-eval: 3 of 4 records have references ending with a chat template.s end-of-turn text (<|im_end|>) that the predictions lack: they cannot match; score against a key without it (-r KEY)" err &&
	head -1 plain.jsonl | icl-eval -M accuracy >/dev/null 2>err && test_grep "1 of 1 records" err &&
	sed -n 1,1p plain.jsonl >two.jsonl && echo "{\"response\":\"a\",\"completion\":\"a\"}" >>two.jsonl &&
	echo "{\"response\":\"b\",\"completion\":\"b\"}" >>two.jsonl &&
	icl-eval -M accuracy two.jsonl >/dev/null 2>err && test ! -s err
'

test_expect_success 'text that only looks like a marker stays: <| b |> with spaces, <b>, a marker mid-text' '
	printf "%s\n" "{\"response\":\"x <| b |>\",\"completion\":\"x\",\"chat\":true}" \
		"{\"response\":\"x<b>\",\"completion\":\"x\",\"chat\":true}" \
		"{\"response\":\"<|im_end|>x\",\"completion\":\"x\",\"chat\":true}" >look.jsonl &&
	icl-eval -M em look.jsonl >out 2>err && test_grep "\"exact_match\":0.0" out && test ! -s err
'

test_expect_success 'a multi-turn "chat": true record: its last answer is the reference (icl-gen answers that turn)' '
	printf "%s\n" "{\"prompt\":[\"u1\",\"u2\"],\"response\":[\"Nice to meet you<|im_end|>\",\"Zoe.<|im_end|>\"],\"chat\":true,\"completion\":\"Nice to meet you\"}" \
		"{\"prompt\":[\"u1\",\"u2\"],\"response\":[\"Nice to meet you<|im_end|>\",\"Zoe.<|im_end|>\"],\"chat\":true,\"completion\":\"Zoe.\"}" >mt.jsonl &&
	icl-eval -q -M em mt.jsonl >out && test_grep "\"exact_match\":0.5," out &&
	sed "s/\"chat\":true,//" mt.jsonl | icl-eval -q -M em >out && test_grep "\"exact_match\":0.0," out
'

test_expect_success 'a multi-turn record of any template (prompt and response arrays, no "chat" mark): the last answer is the reference, not one of several' '
	printf "%s\n" "{\"prompt\":[\"Q: 2+3?\",\"Q: thanks\"],\"response\":[\"5\",\"You are welcome.\"],\"completion\":\"5\"}" \
		"{\"prompt\":[\"Q: 2+3?\",\"Q: thanks\"],\"response\":[\"5\",\"You are welcome.\"],\"completion\":\"You are welcome.\"}" >turns.jsonl &&
	icl-eval -M em,f1 turns.jsonl >out 2>err && test ! -s err &&
	test_grep "\"exact_match\":0.5,\"f1\":0.5," out &&
	echo "{\"prompt\":\"Q\",\"response\":[\"5\",\"five\"],\"completion\":\"five\"}" | icl-eval -q -M em >out &&
	test_grep "\"exact_match\":1.0," out &&
	echo "{\"prompt\":[\"a\",\"b\",\"c\"],\"response\":[\"x\",\"y\"],\"completion\":\"x\"}" >open.jsonl &&
	test_must_fail icl-eval open.jsonl 2>err &&
	test_grep "open.jsonl:1: a conversation of 3 prompts and 2 responses: the last turn, which icl-gen answers, has no reference" err
'

test_done
