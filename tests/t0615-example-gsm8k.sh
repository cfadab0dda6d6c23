#!/bin/sh
# examples/gsm8k.sh runs as examples/gsm8k.md shows, with the tests' tiny model.
. "$(dirname "$0")/lib.sh"
EX="$TESTS_DIR/../examples"
mkdir tiny && cp "$DATA"/model/stories260K/model/* tiny/ && cp "$DATA/tok/bytelevel-512.json" tiny/tokenizer.json

test_expect_success 'examples/gsm8k.sh scores a model on a GSM8K slice' '
	BIN="$ICL_BIN" "$EX/gsm8k.sh" tiny 5 out >summary &&
	echo "{\"records\":5,\"exact_match\":0.0,\"skipped\":0}" >want &&
	test_cmp want summary &&
	test $(wc -l <out/per.jsonl) -eq 5 &&
	test_grep "\"ref_answers\":\[\"18\"\]" out/per.jsonl &&
	test $(wc -l <out/pred.jsonl) -eq 5
'

test_done
