#!/bin/sh
# Progress lines of icl-gen and icl-eval -m (issue 18): count, rate and, for
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

test_done
