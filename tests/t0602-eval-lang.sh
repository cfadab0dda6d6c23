#!/bin/sh
# icl-eval beyond English: --tokenize (sacreBLEU's tokenizers, the automatic
# choice), chrF / chrF++, answer extraction (--extract, gsm8k), --per-record.
. "$(dirname "$0")/lib.sh"

test_expect_success 'data files are the ones named in SHA256SUMS' '
	gzip -dc "$DATA/eval/gsm8k_test.jsonl.gz" >gsm8k_test.jsonl &&
	gzip -dc "$DATA/eval/HumanEval.jsonl.gz" >HumanEval.jsonl &&
	sha256sum -c "$DATA/eval/SHA256SUMS"
'

# Identical pairs: Chinese, Japanese, Korean, Thai.
cat >same.jsonl <<\EOF
{"completion":"正面","response":"正面"}
{"completion":"今天天气很好，我们去公园散步吧！","response":"今天天气很好，我们去公园散步吧！"}
{"completion":"私は学生です。","response":"私は学生です。"}
{"completion":"안녕하세요 세계","response":"안녕하세요 세계"}
{"completion":"สวัสดีครับ","response":"สวัสดีครับ"}
EOF

test_expect_success 'identical CJK, Korean and Thai pairs score 1 on every metric' '
	icl-eval -M all same.jsonl >out &&
	for k in exact_match f1 rougeL bleu chrf chrf++ accuracy; do
		test_grep "\"$k\":1.0[,}]" out || exit 1
	done &&
	test_grep "\"tokenize\":\"char\",\"tokenize_auto\":true" out
'

test_expect_success 'each record alone scores 1 too (auto picks zh or char)' '
	for i in 1 2 3 4 5; do
		sed -n ${i}p same.jsonl >one.jsonl &&
		icl-eval -M em,f1,rougeL,bleu,chrf,chrf++ --per-record pr one.jsonl >out &&
		test_grep "\"f1\":1.0,\"rougeL\":1.0,\"bleu\":.*\"chrf\":1.0,.*\"chrf++\":1.0," out &&
		test_grep "\"f1\":1.0,\"rougeL\":1.0,\"bleu\":1.0,\"chrf\":1.0,\"chrf++\":1.0}" pr || exit 1
	done &&
	sed -n 1p same.jsonl | icl-eval -M f1 >out && test_grep "\"tokenize\":\"zh\"" out &&
	sed -n 4p same.jsonl | icl-eval -M f1 >out && test_grep "\"tokenize\":\"zh\"" out &&
	sed -n 5p same.jsonl | icl-eval -M f1 >out && test_grep "\"tokenize\":\"char\"" out
'

test_expect_success 'forced 13a keeps the English definitions (rouge-score drops CJK: 0)' '
	sed -n 1p same.jsonl | icl-eval -M rougeL,f1 --tokenize 13a >out &&
	echo "{\"records\":1,\"tokenize\":\"13a\",\"f1\":1.0,\"rougeL\":0.0,\"skipped\":0}" >want &&
	test_cmp want out
'

# A Chinese pair scored by character: pred 我爱吃苹果 vs ref 我喜欢吃苹果。
# zh tokens: 我 爱 吃 苹 果 / 我 喜 欢 吃 苹 果 (the 。 dropped for F1 and
# ROUGE-L): common 4, P 4/5, R 4/6 -> F1 = 8/11; LCS 我吃苹果 = 4 -> same.
test_expect_success 'F1 and ROUGE-L by character under zh (by hand)' '
	echo "{\"completion\":\"我爱吃苹果\",\"response\":\"我喜欢吃苹果。\"}" >zh.jsonl &&
	icl-eval -M f1,rougeL zh.jsonl >out &&
	echo "{\"records\":1,\"tokenize\":\"zh\",\"tokenize_auto\":true,\"f1\":0.727272727272727,\"rougeL\":0.727272727272727,\"skipped\":0}" >want &&
	test_cmp want out
'

# sacreBLEU's values, read from the fixture with sed; compared to 1e-9.
near() { awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && d < 1e-9) }'; }

test_expect_success 'corpus BLEU (each tokenizer) and chrF, chrF++ of the fixture pairs equal sacreBLEU' '
	tr -d "\n " <"$DATA/eval/sacrebleu_tok.json" >ref.json &&
	for t in 13a intl zh char none; do
		icl-eval -M bleu --tokenize $t "$DATA/eval/sacrebleu_tok.jsonl" >out &&
		want=$(sed "s/.*\"bleu\":{//; s/.*\"$t\":{\"corpus\":{\"score\":\([0-9.e-]*\),.*/\1/" ref.json) &&
		got=$(sed "s/.*\"bleu_detail\":{\"score\":\([0-9.e-]*\),.*/\1/" out) &&
		near "$got" "$want" || { echo "$t: $got, want $want"; exit 1; }
	done &&
	icl-eval -M chrf,chrf++ "$DATA/eval/sacrebleu_tok.jsonl" >out &&
	for m in chrf chrf++; do
		want=$(sed "s/.*\"$m\":{\"corpus\":\([0-9.e-]*\),.*/\1/" ref.json) &&
		got=$(sed "s/.*\"${m}_detail\":{\"score\":\([0-9.e-]*\)}.*/\1/" out) &&
		near "$got" "$want" || { echo "$m: $got, want $want"; exit 1; }
	done
'

test_expect_success 'a bad --tokenize or --extract is a usage error' '
	{ icl-eval --tokenize ja-mecab </dev/null 2>err; test $? -eq 2; } &&
	test_grep "not one of auto, 13a, intl, zh, char, none" err &&
	{ icl-eval --extract "(a" </dev/null 2>err; test $? -eq 2; } &&
	test_grep "offset" err
'

# GSM8K: the references scored against themselves, and against predictions
# that state the answer in prose (the "#### N" read independently with sed).
test_expect_success 'GSM8K references against themselves with --extract gsm8k: 1' '
	icl-eval --pred answer --ref answer -M em --extract gsm8k gsm8k_test.jsonl >out &&
	echo "{\"records\":1319,\"exact_match\":1.0,\"skipped\":0}" >want &&
	test_cmp want out
'

test_expect_success 'GSM8K: answers stated in prose match the #### numbers' '
	sed "s/.*#### \([^\"]*\)\".*/\1/" gsm8k_test.jsonl >nums &&
	test $(wc -l <nums) -eq 1319 &&
	sed "s/^{//" gsm8k_test.jsonl >rest &&
	paste -d "|" nums rest | sed "s/^\([^|]*\)|/{\"completion\":\"So she needs \$\1.00 in total.\",/" >pred.jsonl &&
	icl-eval --ref answer -M em --extract gsm8k --per-record pr pred.jsonl >out &&
	echo "{\"records\":1319,\"exact_match\":1.0,\"skipped\":0}" >want &&
	test_cmp want out &&
	sed -n 1p pr >line1 &&
	test_grep "\"answer\":\"18\",\"ref_answers\":\[\"18\"\],\"exact_match\":1.0" line1 &&
	sed "s/ in total\./, or 0.25 each./" pred.jsonl | icl-eval --ref answer -M em --extract gsm8k >out &&
	test_grep "\"exact_match\":0.0," out
'

test_expect_success '--extract: exact match and accuracy keep a sign and a decimal point ("-3" is not "3", "1.5" not "15"); case and spaces do not matter' '
	cat >sign.jsonl <<-\EOF &&
	{"completion":"It is 3.","response":"#### -3"}
	{"completion":"15 in all","response":"#### 1.5"}
	{"completion":"so -3","response":"#### -3"}
	{"completion":"1,234 apples","response":"#### 1234"}
	EOF
	icl-eval -M em,accuracy --extract gsm8k --per-record pr sign.jsonl >out &&
	test_grep "\"exact_match\":0.5,\"accuracy\":0.5,\"correct\":2," out &&
	sed -n 1p pr >l1 && test_grep "\"answer\":\"3\",\"ref_answers\":\[\"-3\"\],\"exact_match\":0.0,\"correct\":false" l1 &&
	printf "%s\n" "{\"completion\":\"The answer is (b)\",\"response\":\"B\"}" |
		icl-eval -M em --extract "answer is \\(?([A-Da-d])" >out &&
	test_grep "\"exact_match\":1.0," out
'

test_expect_success '--extract REGEX: first group; no match is an empty prediction' '
	cat >mc.jsonl <<-\EOF &&
	{"completion":"The answer is (B) since...","response":"B"}
	{"completion":"so the answer: C","response":"answer: C"}
	{"completion":"no idea","response":"D"}
	EOF
	icl-eval -M em --extract "answer is \\(?([A-D])|answer: ([A-D])" --per-record pr mc.jsonl >out &&
	test_grep "\"exact_match\":0.666666666666667," out &&
	sed -n 2p pr >l2 && test_grep "\"answer\":\"C\",\"ref_answers\":\[\"C\"\]" l2 &&
	sed -n 3p pr >l3 && test_grep "\"answer\":\"\",\"ref_answers\":\[\"D\"\],\"exact_match\":0.0" l3
'

test_done
