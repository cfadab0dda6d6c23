#!/bin/sh
# README's "A Makefile (or cron) recipe", taken from README.md as printed and
# run as a user would: it builds score.json, a second make does nothing, and
# the nightly rerun after the data changed retrains into the same run/
# (a run owns its -o folder: the recipe must say --overwrite-output-dir);
# a failed step leaves no target that the next make would take as done.
. "$(dirname "$0")/lib.sh"
README="$TESTS_DIR/../README.md"

# the indented block after "A minimal version of examples/Makefile:", up to
# the text that follows it
sed -n '/A minimal version of examples\/Makefile:/,/and in crontab/p' "$README" |
	sed -n 's/^    //p' >Makefile

mkdir base && cp "$DATA/model/stories260K/model/"* base/ && cp "$DATA/tok/bytelevel-512.json" base/tokenizer.json
rows() { # N: a CSV of N instruction/output rows
	echo "instruction,output"
	i=0; while [ $i -lt "$1" ]; do echo "Say $i twice.,$i $i"; i=$((i + 1)); done
}

test_expect_success 'the recipe is in README.md' '
	test_grep "^run/model.safetensors: train.tok" Makefile &&
	test_grep "^score.json: pred.jsonl" Makefile &&
	test $(grep -c "	icl-" Makefile) -eq 5
'

test_expect_success 'make score.json builds every step; a second make does nothing' '
	rows 12 >data.csv &&
	printf "%s\n" "{\"prompt\":\"Say 3 twice.\",\"response\":\"3 3\"}" >test.jsonl &&
	make -s score.json >out 2>err &&
	test_grep "\"records\":1" score.json &&
	test -f run/model.safetensors && test -s metrics.jsonl &&
	make score.json >out 2>&1 &&
	test_grep "is up to date" out
'

test_expect_success 'new data: the next make retrains into run/ and scores again' '
	rows 16 >data.csv &&
	cp score.json score.1 &&
	make -s score.json >out 2>err &&
	test_grep "\"records\":1" score.json &&
	test_grep "16 examples" err &&
	make score.json >out 2>&1 && test_grep "is up to date" out
'

test_expect_success 'a step that fails leaves no target behind: the next make fails again' '
	printf "a,b\n1,2\n" >data.csv &&
	test_must_fail make -s score.json >out 2>err &&
	test ! -e train.jsonl &&
	test_must_fail make -s score.json >out 2>err
'

test_done
