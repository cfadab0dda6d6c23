#!/bin/sh
# Progress lines of icl-gen, icl-eval -m and icl-tok encode (issue 18): count, rate and, for
# named files, total and ETA on standard error; --progress forces them
# (standard error is not a terminal here), -q and --no-progress silence them.
. "$(dirname "$0")/lib.sh"
M="$DATA/model/llama-tiny/model"
printf "1 2 3\n4 5\n6 7 8 9\n" >p.tok

test_expect_success 'icl-gen --ids --progress: DONE/TOTAL lines, rate, elapsed, ETA' '
	icl-gen -m "$M" --ids -n 3 --progress p.tok >out 2>err &&
	test $(wc -l <out) -eq 3 &&
	tr "\r" "\n" <err >lines &&
	test_grep "^icl-gen: 3/3 lines  [0-9.]*/s  elapsed 0:0[0-9]  ETA 0:00" lines
'

test_expect_success 'standard input: a count without a total' '
	icl-gen -m "$M" --ids -n 3 --progress <p.tok >out 2>err &&
	tr "\r" "\n" <err >lines &&
	test_grep "^icl-gen: 3 lines  [0-9.]*/s  elapsed" lines && ! grep -q ETA lines
'

test_expect_success 'not a terminal, -q or --no-progress: nothing on standard error' '
	icl-gen -m "$M" --ids -n 3 p.tok >out 2>err && ! test -s err &&
	icl-gen -m "$M" --ids -n 3 --progress -q p.tok >out 2>err && ! test -s err &&
	icl-eval -m "$M" p.tok >out 2>err && ! test -s err &&
	icl-eval -m "$M" --progress --no-progress p.tok >out 2>err && ! test -s err
'

test_expect_success 'icl-eval -m --progress counts lines of all files, the summary unchanged' '
	icl-eval -m "$M" p.tok p.tok >plain &&
	icl-eval -m "$M" --progress p.tok p.tok >out 2>err &&
	test_cmp plain out &&
	tr "\r" "\n" <err >lines &&
	test_grep "^icl-eval: 6/6 lines  [0-9.]*/s  elapsed" lines
'

test_expect_success 'icl-tok encode --progress: records done of the total, rate, ETA; the tokens unchanged' '
	printf "{\"text\":\"a b\"}\n{\"text\":\"c\"}\n\n{\"text\":\"d e f\"}\n" >r.jsonl &&
	icl-tok encode -t "$DATA/tok/bytelevel-512.json" --progress r.jsonl >o.tok 2>err &&
	tr "\r" "\n" <err >lines &&
	test_grep "^icl-tok: 3/3 records  [0-9.]*/s  elapsed 0:0[0-9]  ETA 0:00" lines &&
	icl-tok encode -t "$DATA/tok/bytelevel-512.json" r.jsonl >o2.tok 2>err && ! test -s err &&
	icl-tok encode -t "$DATA/tok/bytelevel-512.json" --progress -q r.jsonl >o3.tok 2>err && ! test -s err &&
	icl-tok encode -t "$DATA/tok/bytelevel-512.json" --progress --no-progress <r.jsonl >o4.tok 2>err && ! test -s err &&
	test_cmp o.tok o2.tok && test_cmp o.tok o3.tok
'

if command -v script >/dev/null 2>&1; then
test_expect_success 'icl-tok encode at a terminal: no line for input done within a second' '
	script -qec "icl-tok encode -t \"$DATA/tok/bytelevel-512.json\" r.jsonl >o5.tok" /dev/null >tty.out 2>&1 </dev/null &&
	test_cmp o.tok o5.tok && ! grep -q "records" tty.out
'
else
test_skip 'icl-tok encode at a terminal' 'no script(1)'
fi

test_done
