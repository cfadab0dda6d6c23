#!/bin/sh
# icl-eval: options, usage errors, man page.
. "$(dirname "$0")/lib.sh"
MAN="$TESTS_DIR/../man/man1/icl-eval.1"

test_expect_success '--help teaches and exits 0' '
	icl-eval --help >out &&
	test_grep "^Usage: icl-eval" out &&
	test_grep "exact_match, f1" out &&
	test_grep "Example:" out
'

# the summary line shown under "Example:" in --help and icl-eval(1) has the
# keys, in their order, that icl-eval --metrics em,f1 prints
test_expect_success 'the --help and man page example output has the real keys' '
	printf "%s\n" "{\"response\":\"a b\",\"completion\":\"a c\"}" >pred.jsonl &&
	icl-eval --metrics em,f1 pred.jsonl | grep -o "\"[a-z_0-9]*\":" >want &&
	icl-eval --help | sed -n "/--metrics em,f1\$/{n;p;}" | grep -o "\"[a-z_0-9]*\":" >got &&
	test_cmp want got &&
	sed -n "/--metrics em,f1\$/{n;p;}" "$MAN" | grep -o "\"[a-z_0-9]*\":" >got &&
	test_cmp want got
'

test_expect_success '--version names the program' '
	icl-eval --version >out &&
	test_grep "^icl-eval (icl) " out
'

test_expect_code 2 'an unknown metric is a usage error' '
	icl-eval --metrics em,meteor </dev/null 2>err; rc=$?
	grep -q "unknown metric .meteor." err || rc=99
	exit $rc
'

test_expect_success 'metric names: any case, - or _, the usual synonyms; the keys stay the same' '
	printf "%s\n" "{\"completion\":\"the cat sat\",\"response\":\"The cat sat down\"}" \
		"{\"completion\":\"a dog\",\"response\":\"a dog\"}" >syn.jsonl &&
	icl-eval -M em,rougeL,f1,bleu,chrf++ syn.jsonl >want &&
	icl-eval -M Exact-Match,ROUGE-L,F1_score,sacreBLEU,chrF_pp syn.jsonl >got && test_cmp want got &&
	icl-eval -M exact_match,rougel,f1,BLEU,CHRF++ syn.jsonl >got && test_cmp want got &&
	grep -q "\"exact_match\":0.5,.*\"rougeL\":" got
'

test_expect_code 2 'an unknown metric lists the known names' '
	icl-eval -M rougeLsum </dev/null 2>err; rc=$?
	grep -q "^icl-eval: --metrics: unknown metric .rougeLsum. (known: em, f1, rougeL, bleu, chrf, chrf++, accuracy, all, pass@K;" err || rc=99
	exit $rc
'

test_expect_code 2 'an unknown option is a usage error' '
	icl-eval --frobnicate </dev/null
'

test_expect_code 1 '-m with a missing model folder names it' '
	icl-eval -m no_such_model </dev/null 2>err; rc=$?
	grep -q "^icl-eval: no_such_model" err || rc=99
	exit $rc
'

test_expect_code 2 '-m does not mix with the text options' '
	icl-eval -m model_dir --pred x </dev/null
'

test_expect_code 1 'a missing file is an error naming it' '
	icl-eval no-such.jsonl 2>err; rc=$?
	grep -q "no-such.jsonl" err || rc=99
	exit $rc
'

test_expect_success 'token lines without -m: a usage error saying -m MODEL is needed' '
	printf "#icl-tokens 1 fingerprint=xxh3:0123456789abcdef vocab_size=96 bos=-1 eos=2 pad=2 source=x\n1 2\t3\n" >t.tok &&
	rc=0; icl-eval t.tok >out 2>err || rc=$?
	test $rc -eq 2 && test ! -s out &&
	test_grep "icl-eval: t.tok: token lines (icl-tok encode): their loss and perplexity need -m MODEL" err
'

test_expect_success 'records without a completion: the error says icl-gen adds it' '
	echo "{\"prompt\":\"a\",\"response\":\"b\"}" >recs.jsonl &&
	test_must_fail icl-eval recs.jsonl >out 2>err && test ! -s out &&
	test_grep "^icl-eval: recs.jsonl:1: no \"completion\" key (the prediction; see --pred): icl-gen -m MODEL adds it to records; to score a model on them without generating, icl-tok encode them and give the token lines with -m MODEL$" err &&
	test_must_fail icl-eval -p pred recs.jsonl 2>err &&
	echo "icl-eval: recs.jsonl:1: no \"pred\" key (the prediction; see --pred)" >want && test_cmp want err
'

test_expect_success 'a CSV file: the error says what icl-eval reads and what makes it; a bad later line: no hint' '
	printf "instruction,output\na,b\n" >d.csv &&
	test_must_fail icl-eval d.csv >out 2>err && test ! -s out &&
	test_grep "^icl-eval: d.csv:1: bad JSON at byte offset 11: .* (icl-eval reads JSON Lines records, {\"completion\": ..., \"response\": ...} one a line, as icl-gen writes them: icl-fmt makes records from CSV, TSV or JSON data)$" err &&
	printf "{\"completion\":\"a\",\"response\":\"a\"}\n{bad\n" >b.jsonl &&
	test_must_fail icl-eval b.jsonl >out 2>err &&
	test_grep "^icl-eval: b.jsonl:2: bad JSON at byte offset 4: string or .}. expected near .bad.$" err
'

test_done
