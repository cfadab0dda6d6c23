#!/bin/sh
# Options every program shares (lib/cli.h): -V, numbers range-checked in one
# place and never truncated (issue 18, defect 6), -t meaning --tokenizer.
. "$(dirname "$0")/lib.sh"

for p in icl-fmt icl-tok icl-train icl-gen icl-eval icl-convert; do
	test_expect_success "$p -V and --version print the version" '
		$p -V >v1 && $p --version >v2 && test_cmp v1 v2 &&
		test_grep "^$p (icl) " v1 && test_grep "^BLIS .*kernels: " v1
	'
done

# refused: exit 2, the option and the value named, nothing run
refused() { # name, then the command (no quoting needed in its words)
	name=$1; shift; cmd="$*"
	test_expect_success "$name" '
		rc=0; $cmd </dev/null >out 2>err || rc=$?
		test $rc -eq 2 && test ! -s out && test_grep "want " err && test_grep "Try .* --help" err
	'
}
refused 'icl-gen --batch-size 4294967297 (2^32+1) is refused, not batch 1' \
	icl-gen -m nosuch --batch-size 4294967297
refused 'icl-gen --batch-size 99999999999999999999 (past long) is refused' \
	icl-gen -m nosuch --batch-size 99999999999999999999
refused 'icl-gen --seed -1 is refused' icl-gen -m nosuch --seed -1
refused 'icl-gen --temperature nan is refused' icl-gen -m nosuch --temperature nan
refused 'icl-tok --threads 10000 is refused' icl-tok encode -t nosuch.json --threads 10000
refused 'icl-tok --max-len 0 is refused' icl-tok encode -t nosuch.json --max-len 0
refused 'icl-tok --vocab-size 4294967553 is refused' icl-tok train -o t.json --vocab-size 4294967553
refused 'icl-fmt --threads 4294967298 is refused' icl-fmt --threads 4294967298
refused 'icl-fmt --split 0 is refused' icl-fmt --split 0 --split-out x.jsonl
refused 'icl-fmt --seed 18446744073709551616 (2^64) is refused' icl-fmt --seed 18446744073709551616
refused 'icl-fmt --on-error maybe is refused' icl-fmt --on-error maybe
refused 'icl-eval --threads 0 is refused' icl-eval -m nosuch --threads 0
refused 'icl-train --batch-size 4294967297 is refused, not batch 1' \
	icl-train -o run --arch llama -t tok.json --batch-size 4294967297
refused 'icl-train --hidden-size 4294967360 is refused, not hidden 64' \
	icl-train -o run --arch llama -t tok.json --hidden-size 4294967360
refused 'icl-train --threads 10000 is refused' icl-train -o run --arch llama -t tok.json --threads 10000
refused 'icl-train --seed 18446744073709551616 is refused' icl-train -o run --arch llama -t tok.json --seed 18446744073709551616

test_expect_success 'the message names the option and the value' '
	rc=0; icl-gen -m nosuch --batch-size 4294967297 2>err || rc=$?
	echo "icl-gen: --batch-size '"'"'4294967297'"'"': want an integer from 1 to 4096" >want &&
	head -1 err >got && test_cmp want got
'

test_expect_success 'icl-fmt --seed takes any 64-bit value' '
	echo "{\"instruction\":\"a\",\"output\":\"b\"}" >one.jsonl &&
	icl-fmt -q --shuffle --seed 18446744073709551615 one.jsonl >out &&
	test $(wc -l <out) -eq 1
'

test_expect_success '-t is --tokenizer where a tokenizer is taken, and nothing else' '
	icl-tok --help | grep -q -- "-t, --tokenizer" &&
	for p in icl-fmt icl-gen icl-eval; do
		rc=0; $p -t x </dev/null >/dev/null 2>err || rc=$?
		test $rc -eq 2 || { echo "$p accepts -t"; exit 1; }
	done &&
	echo "{\"instruction\":\"a\",\"output\":\"b\"}" | icl-fmt -T plain >out &&
	test_grep "^{\"prompt\":\"a.*\"response\":\"b\"}$" out
'

# usage: exit 2 and the message
usage2() { rc=0; "$@" </dev/null >/dev/null 2>err || rc=$?; test $rc -eq 2; }
test_expect_success 'an unknown long option near a real one names it; far ones do not guess' '
	usage2 icl-fmt --shufle x && test_grep "unknown option .--shufle. (did you mean --shuffle?)" err &&
	usage2 icl-gen --tempreature 1 && test_grep "(did you mean --temperature?)" err &&
	usage2 icl-train --lora-rank 4 && test_grep "unknown option .--lora-rank.$" err &&
	usage2 icl-fmt --xyz && ! grep -q "did you mean" err &&
	usage2 icl-fmt --sh && test_grep "ambiguous option .--sh. (--shuffle, --shots" err
'

test_done
