#!/bin/sh
# icl-fmt -o and --split-out: whole or not at all; write errors named once.
. "$(dirname "$0")/lib.sh"

printf '%s\n' '{"instruction":"a","output":"b"}' '{"instruction":"c","output":"d"}' >good.jsonl
{ cat good.jsonl; echo '{bad'; cat good.jsonl; } >bad.jsonl

test_expect_success 'a failed run leaves no -o file and no temporary file' '
	if icl-fmt -o out.jsonl bad.jsonl 2>err; then exit 1; fi
	test_grep "bad.jsonl:3: bad JSON" err &&
	test ! -e out.jsonl && ls >ls.txt && if grep "^out\\.jsonl" ls.txt; then exit 1; fi
'

test_expect_success 'a failed run keeps the old -o and --split-out files as they were' '
	echo old >out.jsonl && echo old2 >val.jsonl &&
	if icl-fmt -o out.jsonl --split 0.5 --split-out val.jsonl bad.jsonl 2>err; then exit 1; fi
	echo old >want && test_cmp want out.jsonl && echo old2 >want && test_cmp want val.jsonl &&
	test $(ls | grep -c "jsonl.tmp") -eq 0
'

test_expect_success '-o naming an input is refused; the input survives' '
	cp good.jsonl same.jsonl && rc=0 && icl-fmt -q -o same.jsonl same.jsonl 2>err || rc=$?
	test $rc -eq 2 && test_grep "same.jsonl is both an input and the output (-o): it would be destroyed" err &&
	test_cmp good.jsonl same.jsonl
'

test_expect_success '-o file gets the usual permissions' '
	(umask 022 && icl-fmt -o perm.jsonl good.jsonl) &&
	test "$(stat -c %a perm.jsonl)" = 644
'

test_expect_success '-o onto an existing file keeps its mode (a private file stays private)' '
	echo old >private.jsonl && chmod 600 private.jsonl &&
	(umask 022 && icl-fmt -o private.jsonl good.jsonl) &&
	test "$(stat -c %a private.jsonl)" = 600 &&
	icl-fmt good.jsonl >want && test_cmp want private.jsonl
'

test_expect_success 'a new -o file honours the umask' '
	(umask 077 && icl-fmt -o new077.jsonl good.jsonl) &&
	test "$(stat -c %a new077.jsonl)" = 600
'

if test -w /dev/full; then
test_expect_success 'write errors: exit 1, one message naming the output' '
	if icl-fmt good.jsonl >/dev/full 2>err; then exit 1; fi
	echo "icl-fmt: <stdout>: write error: No space left on device" >want && test_cmp want err &&
	if icl-fmt -o /dev/full good.jsonl 2>err; then exit 1; fi
	echo "icl-fmt: /dev/full: write error: No space left on device" >want && test_cmp want err &&
	if icl-fmt --split 0.5 --split-out /dev/full good.jsonl >/dev/null 2>err; then exit 1; fi
	test_cmp want err
'
else
test_skip 'write errors: exit 1, one message naming the output' 'no /dev/full'
fi

test_expect_success '--split-out naming the output is a usage error' '
	for args in "-o same.jsonl --split-out same.jsonl" "--split-out -"; do
		rc=0; icl-fmt --split 0.5 $args good.jsonl >stdout.jsonl 2>err || rc=$?
		test $rc -eq 2 && test_grep "are the same file" err || exit 1
	done
	rc=0; icl-fmt --split 0.5 --split-out stdout.jsonl good.jsonl >stdout.jsonl 2>err || rc=$?
	test $rc -eq 2 &&
	icl-fmt --split 0.5 --split-out /dev/null -o /dev/null good.jsonl
'

test_expect_success 'SIGTERM before the end removes the temporary file' '
	i=0; while [ $i -lt 20000 ]; do echo "{\"instruction\":\"q$i\",\"output\":\"a$i\"}"; i=$((i+1)); done >many.jsonl &&
	set -- && for k in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do set -- "$@" many.jsonl; done &&
	{ icl-fmt --shuffle -o sig.jsonl "$@" & } && pid=$! &&
	n=0; while ! ls | grep -q "^sig\.jsonl\.tmp" && [ $n -lt 100 ]; do sleep 0.05; n=$((n+1)); done
	kill -TERM $pid; rc=0; wait $pid || rc=$?
	ls >ls.txt; if grep "^sig\.jsonl" ls.txt; then test $rc -eq 0 || exit 1; fi
'

test_expect_success 'an -o or --split-out in a missing folder names the folder' '
	rc=0; icl-fmt -o nodir/out.jsonl good.jsonl 2>err || rc=$?
	test $rc -eq 1 && echo "icl-fmt: nodir/out.jsonl: no folder nodir to create it in" >want && test_cmp want err &&
	rc=0; icl-fmt --split 0.5 --split-out good.jsonl/v.jsonl good.jsonl >/dev/null 2>err || rc=$?
	test $rc -eq 1 && echo "icl-fmt: good.jsonl/v.jsonl: good.jsonl is not a folder" >want && test_cmp want err &&
	ln -s gone/t.jsonl dangling && rc=0; icl-fmt -o dangling good.jsonl 2>err || rc=$?
	test $rc -eq 1 && echo "icl-fmt: dangling: no folder gone to create it in" >want && test_cmp want err &&
	echo "some text to train on" >c.txt && rc=0; icl-tok train --vocab-size 300 -o nodir/t.json c.txt 2>err || rc=$?
	test $rc -ne 0 && test_grep "nodir/t.json: no folder nodir to create it in" err
'

test_done
