#!/bin/sh
# examples/Makefile (make demo): a finished run is up to date, and a changed
# knob reruns only what follows it.  Nothing is computed: `make -t` marks a
# whole run done (touching every step in dependency order), then `make -q`
# and `make -n` say what a real `make` would do.  The programs and the model
# are never run (BIN and MODEL point at nothing).
. "$(dirname "$0")/lib.sh"
EX="$TESTS_DIR/../examples"
# run make on the demo's Makefile with out/ here and tiny settings
demo() {
	make -C "$EX" --no-print-directory O="$TEST_TMP/out" BIN=/nonexistent/bin \
	  MODEL="$TEST_TMP/no-model.gguf" STEPS=2 CLS_TEST=4 ALPACA_TEST=2 GSM_TEST=1 "$@"
}
# what make -n would run, one command a line (continuations joined)
plan() {
	demo -s -n "$@" | sed -e :a -e '/\\$/N; s/\\\n//; ta'
}
# a finished run: every step done
R="$TEST_TMP/out/REPORT.md"
finished() {
	# (make -t makes no folders: the merged model's is made here)
	rm -rf out && mkdir -p out/merged && demo -s -t "$R" "$@" >/dev/null
}

test_expect_success 'make -t marks every step done; the knobs are recorded in out/params' '
	finished &&
	test -f out/REPORT.md && test -f out/lora.metrics.jsonl &&
	test -f out/tuned.gguf && test -f out/base.gen.amazon.jsonl &&
	echo 2 >want && test_cmp want out/params/STEPS &&
	echo Nimbus >want && test_cmp want out/params/NAME
'

test_expect_success 'a finished run is up to date: make -q says so, make -n runs nothing' '
	finished &&
	demo -q "$R" &&
	plan "$R" >plan &&
	test ! -s plan
'

test_expect_success 'the report depends on every step (make -n after removing a score file)' '
	finished &&
	rm out/base.gen.agnews.acc.json &&
	plan "$R" >plan &&
	test_grep "icl-eval -r label -M accuracy .*base.gen.agnews.jsonl" plan &&
	test_grep "report.py" plan &&
	if grep -q "icl-gen\|icl-train\|icl-fmt" plan; then exit 1; fi
'

test_expect_success 'STEPS: training and what follows it, not data or the untuned model' '
	finished &&
	if demo -q "$R" STEPS=3; then exit 1; fi &&
	plan "$R" STEPS=3 >plan &&
	test_grep "icl-train .*--max-steps 3" plan &&
	test_grep "icl-gen .*tuned.model.* .*amazon.test.chat.jsonl" plan &&
	test_grep "icl-eval .*tuned.model.*alpaca.test.tok" plan &&
	test_grep "icl-convert .*--adapter" plan &&
	test_grep "report.py" plan &&
	if grep -q "icl-fmt\|icl-tok\|base.model" plan; then exit 1; fi &&
	echo 3 >want && test_cmp want out/params/STEPS
'

test_expect_success 'LORA_R and ICL_DEMO_QLORA: training again, with their options' '
	finished &&
	plan "$R" LORA_R=4 >plan &&
	test_grep "icl-train .*--lora-r 4 .*--dequantize" plan &&
	if grep -q "icl-fmt\|base.model" plan; then exit 1; fi &&
	finished &&
	plan "$R" ICL_DEMO_QLORA=1 >plan &&
	test_grep "icl-train .*--lora-r" plan &&
	if grep -q "icl-train .*--dequantize" plan; then exit 1; fi
'

test_expect_success 'DTYPE: bf16 where the CPU has AVX512-BF16, else float32; a change trains again' '
	finished &&
	if grep -qw avx512_bf16 /proc/cpuinfo; then def=bf16 other=float32; else def=float32 other=bf16; fi &&
	echo $def >want &&
	test_cmp want out/params/DTYPE &&
	plan "$R" DTYPE=$def >plan &&
	test ! -s plan &&
	plan "$R" STEPS=3 >plan &&
	test_grep "icl-train .*--dtype $def " plan &&
	finished &&
	plan "$R" DTYPE=$other >plan &&
	test_grep "icl-train .*--dtype $other " plan &&
	test_grep "icl-gen .*tuned.model.* .*amazon.test.chat.jsonl" plan &&
	test_grep "report.py" plan &&
	if grep -q "icl-fmt\|icl-tok\|base.model" plan; then exit 1; fi
'

test_expect_success 'CLS_REPEAT: the mix, its tokens and training again, not the records' '
	finished &&
	plan "$R" CLS_REPEAT=5 >plan &&
	test_grep "seq 5.*amazon.train.chat.jsonl .*agnews.train.chat.jsonl" plan &&
	test_grep "icl-tok .*train.chat.jsonl" plan &&
	test_grep "icl-train .*--max-steps 2" plan &&
	test_grep "icl-gen .*tuned.model.* .*agnews.test.chat.jsonl" plan &&
	if grep -q "icl-fmt\|base.model\|icl-tok .*alpaca" plan; then exit 1; fi &&
	echo 5 >want && test_cmp want out/params/CLS_REPEAT
'

test_expect_success 'CLS_BALANCE and ID_AUTHOR_REPEAT: the mix and training again, nothing before' '
	finished &&
	plan "$R" CLS_BALANCE=1 >plan &&
	test_grep "seq $(cat out/params/CLS_REPEAT).*amazon.train.chat.jsonl.*awk -f balance.awk \$f" plan &&
	test_grep "icl-train" plan &&
	if grep -q "icl-fmt\|base.model" plan; then exit 1; fi &&
	finished &&
	plan "$R" >plan && test ! -s plan &&
	r=$(cat out/params/ID_REPEAT) &&
	plan "$R" ID_AUTHOR_REPEAT=7 >plan &&
	test_grep "seq \$(( $r > 7 ? $r : 7 )).*-le 7 ] && echo .*id_other.train.chat.jsonl" plan &&
	test_grep "icl-train" plan &&
	if grep -q "icl-fmt\|base.model" plan; then exit 1; fi
'

test_expect_success 'LOSS_AVERAGE: training and what follows, nothing before' '
	finished &&
	plan "$R" LOSS_AVERAGE=examples >plan &&
	test_grep "icl-train .*--loss-average examples" plan &&
	test_grep "icl-gen .*tuned.model.* .*amazon.test.chat.jsonl" plan &&
	if grep -q "icl-fmt\|icl-tok\|base.model" plan; then exit 1; fi
'

test_expect_success 'CLS_DEV: the last N training records are the test set, the rest train' '
	finished &&
	plan "$R" CLS_DEV=3 >plan &&
	test_grep "head -n \$(( n - 3 )) .*amazon.split.rows.jsonl > .*amazon.train.rows.jsonl" plan &&
	test_grep "tail -n 3 .*amazon.split.rows.jsonl > .*amazon.test.rows.jsonl" plan &&
	test_grep "icl-train" plan &&
	test_grep "icl-gen .*base.model.* .*agnews.test.chat.jsonl" plan &&
	if grep -q "icl-fmt .*--split\|icl-tok .*alpaca\|base.model.* .*id_zh" plan; then exit 1; fi &&
	printf "%s\n" a b c d e f g >rows &&
	n=$(wc -l <rows) && head -n $(( n - 3 )) rows >train && tail -n 3 rows >test &&
	printf "%s\n" a b c d >want && test_cmp want train &&
	printf "%s\n" e f g >want && test_cmp want test
'

test_expect_success 'CLS_DEV: not a whole number, or every training record, is refused' '
	finished &&
	test_must_fail demo -s -n "$R" CLS_DEV=abc 2>err &&
	test_grep "CLS_DEV=.abc.: want a whole number of records" err &&
	printf "%s\n" 1 2 3 4 5 >out/amazon.split.rows.jsonl &&
	test_must_fail demo -s "$TEST_TMP/out/amazon.train.rows.jsonl" CLS_DEV=5 2>err &&
	test_grep "CLS_DEV=5 holds out all 5 training records of amazon" err &&
	test ! -s out/amazon.train.rows.jsonl &&
	demo -s "$TEST_TMP/out/amazon.train.rows.jsonl" CLS_DEV=3 &&
	printf "%s\n" 1 2 >want && test_cmp want out/amazon.train.rows.jsonl
'

test_expect_success 'balance.awk repeats the rarer labels records until the labels are even' '
	cat >mix.jsonl <<-\EOF &&
	{"prompt":"a","label":"Yes"}
	{"prompt":"b","label":"No"}
	{"prompt":"c","label":"Yes"}
	{"prompt":"d","label":"Yes"}
	{"prompt":"e","label":"Maybe"}
	{"prompt":"f","label":"Maybe"}
	EOF
	awk -f "$EX/balance.awk" mix.jsonl >out.jsonl &&
	cat mix.jsonl >want &&
	cat >>want <<-\EOF &&
	{"prompt":"b","label":"No"}
	{"prompt":"b","label":"No"}
	{"prompt":"e","label":"Maybe"}
	EOF
	test_cmp want out.jsonl &&
	echo "{\"prompt\":\"x\"}" >>mix.jsonl &&
	test_must_fail awk -f "$EX/balance.awk" mix.jsonl 2>err &&
	test_grep "mix.jsonl:7: no \"label\"" err
'

test_expect_success 'CLS_TOKENS: the classification completions of both models only' '
	finished &&
	plan "$R" CLS_TOKENS=5 >plan &&
	test_grep "icl-gen .*base.model.* -n 5 .*amazon.test.chat.jsonl" plan &&
	test_grep "icl-gen .*tuned.model.* -n 5 .*agnews.test.chat.jsonl" plan &&
	test $(grep -c "icl-gen" plan) -eq 4 &&
	if grep -q "icl-train\|icl-fmt\|id_en\|gsm8k\|alpaca" plan; then exit 1; fi
'

test_expect_success 'NAME: the identity data, training and evaluation; not the other tasks data' '
	finished &&
	plan "$R" NAME=Orion >plan &&
	test_grep "s/{{name}}/Orion/g" plan &&
	test_grep "icl-train" plan &&
	test_grep "icl-gen .*base.model.*id_zh.test.chat.jsonl" plan &&
	test_grep "extract .(Orion)." plan &&
	if grep -q "amazon.raw\|agnews.raw\|alpaca_en_demo\|gsm8k_test" plan; then exit 1; fi
'

test_expect_success 'a changed data file reruns its task from the start, not the others' '
	cp -rp "$EX/data" data &&
	finished D="$TEST_TMP/data" &&
	demo -q "$R" D="$TEST_TMP/data" &&
	touch data/t0_amazon_polarity_Is_this_review.jsonl &&
	plan "$R" D="$TEST_TMP/data" >plan &&
	test_grep "icl-fmt .*amazon.raw.jsonl" plan &&
	test_grep "icl-train" plan &&
	test_grep "icl-gen .*base.model.*amazon.test.chat.jsonl" plan &&
	if grep -q "agnews.raw\|alpaca_en_demo\|identity\|base.model.*agnews" plan; then exit 1; fi
'

test_expect_success 'questions.awk holds out only questions that no training record asks' '
	cat >train.jsonl <<-\EOF &&
	{"prompt":"你是谁？","response":"a"}
	{"prompt":"Who are you?","response":"b"}
	EOF
	cat >other.jsonl <<-\EOF &&
	{"prompt":"Who built \"you\"?","response":"c"}
	EOF
	cat >rest.jsonl <<-\EOF &&
	{"prompt":"你是谁","response":"d"}
	{"prompt":"who are  you","response":"e"}
	{"prompt":"你好","response":"f"}
	{"prompt":"Who built you","response":"g"}
	{"prompt":"Who are they?","response":"h"}
	EOF
	awk -f "$EX/questions.awk" train.jsonl other.jsonl rest.jsonl >out.jsonl &&
	sed -n "3p;5p" rest.jsonl >want &&
	test_cmp want out.jsonl &&
	echo "{\"response\":\"x\"}" >>rest.jsonl &&
	test_must_fail awk -f "$EX/questions.awk" train.jsonl rest.jsonl 2>err &&
	test_grep "rest.jsonl:6: no \"prompt\" first" err
'

test_expect_success 'SEED: the identity held-out set is made again from the new split' '
	finished &&
	plan "$R" SEED=2 >plan &&
	test_grep "icl-fmt .*--seed 2 --split 0.5 *--split-out .*id_zh.rest.rows.jsonl" plan &&
	test_grep "awk -f questions.awk .*id_zh.train.rows.jsonl .*id_other.train.rows.jsonl .*id_zh.rest.rows.jsonl" plan
'

test_expect_success 'the ICL table: every k-shot prompt set, selection and the tuned model' '
	finished &&
	plan ICL.md ICL_SHOTS="1 4" >plan &&
	test_grep "icl-fmt .*--shots 4 .*--shot-selection similar" plan &&
	test_grep "icl-fmt .*--shots 1 .*--shot-selection random --balance-labels" plan &&
	test $(grep -c "icl-fmt .*--shots" plan) -eq 8 &&
	test_grep "icl-gen .*out/icl/agnews.tuned.chat.jsonl" plan &&
	test $(grep -c "icl-gen" plan) -eq 12 &&
	test $(grep -c "icl-fmt .*--max-prompt-tokens 8184 -t .*no-model.gguf" plan) -eq 8 &&
	if grep -q "icl-train" plan; then exit 1; fi
'

# every step of the ICL runs (not ICL.md, which is in examples/)
icl_steps() {
	for t in amazon agnews; do
		for r in zero tuned random1 random4 similar1 similar4; do
			echo "$TEST_TMP/out/icl/$t.$r.gen.acc.json" "$TEST_TMP/out/icl/$t.$r.ptok"
		done
	done
}

test_expect_success 'make icl: the table, out/icl/runs, then the report again' '
	finished &&
	plan icl ICL_SHOTS="1 4" >plan &&
	test "$(grep -o "icl_table.py\|out/icl/runs\|make .*REPORT.md" plan | sed "s/make .*/make/" | tr "\n" " ")" = \
	  "icl_table.py out/icl/runs make " &&
	test_grep "printf .* amazon.tuned amazon.random1 amazon.random4 amazon.similar1 amazon.similar4 agnews.tuned .* > .*out/icl/runs" plan
'

test_expect_success 'the report follows out/icl/runs; make demo never runs the ICL steps' '
	finished &&
	mkdir out/icl && demo -s -t ICL_SHOTS="1 4" $(icl_steps) >/dev/null &&
	demo -q "$R" ICL_SHOTS="1 4" &&
	printf "%s\n" amazon.random1 >out/icl/runs &&
	touch -r out/icl/amazon.random1.gen.acc.json out/icl/runs && touch out/icl/runs &&
	plan "$R" >plan &&
	test "$(cat plan | grep -c .)" = 2 &&
	test_grep "report.py" plan &&
	demo -s -t "$R" >/dev/null &&
	demo -q "$R" &&
	plan "$R" ICL_MAX_PROMPT=1000 ICL_SHOTS="1 4 8" ICL_TEST=7 >plan &&
	test ! -s plan &&
	plan "$TEST_TMP/out/icl/amazon.similar4.gen.acc.json" ICL_MAX_PROMPT=1000 ICL_SHOTS="1 4" >plan &&
	test_grep "icl-fmt .*--shots 4 .*--max-prompt-tokens 1000" plan &&
	test_grep "icl-gen .*amazon.similar4.chat.jsonl" plan &&
	if grep -q "icl-train\|report.py" plan; then exit 1; fi
'

test_done
