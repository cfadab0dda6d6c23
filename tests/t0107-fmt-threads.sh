#!/bin/sh
# icl-fmt --threads 1 and --threads 2 (CSV/TSV parsed in a second thread)
# give byte-identical stdout, stderr and exit status: on the real CSV, and
# on a hostile CSV several parser batches long (256 KiB each) with bad rows
# in the middle, stopping at the first or skipping them.
. "$(dirname "$0")/lib.sh"

gunzip -c "$DATA/fmt/awesome_chatgpt_prompts.csv.gz" >real.csv
# same_12 NAME ARGS... : 1 and 2 threads agree on stdout, stderr, exit status
same_12() {
    name=$1; shift
    test_expect_success "$name: 1 and 2 threads give the same output, messages, status" "
        rc1=0; icl-fmt --threads 1 $* >$name.1.out 2>$name.1.err || rc1=\$?
        rc2=0; icl-fmt --threads 2 $* >$name.2.out 2>$name.2.err || rc2=\$?
        echo \$rc2 >$name.rc
        test \$rc1 -eq \$rc2
        test_cmp $name.1.out $name.2.out
        test_cmp $name.1.err $name.2.err
    "
}
M='--map instruction=act,output=prompt'
same_12 real "$M real.csv"
test_expect_success 'real: all 1486 records written' '
    test $(wc -l <real.2.out) -eq 1486
'
same_12 real-stdin "$M - <real.csv"
same_12 real-dedup-split "$M --dedup --shuffle --split 0.5 --split-out real.val real.csv real.csv"

# hostile: the data rows twice (3.5 MB each, many batches), with a
# quoting error, a ragged row, invalid UTF-8 and a NUL in the middle.
{
    head -n 1 real.csv
    tail -n +2 real.csv
    printf 'a,b"c"\r\n'                # quote inside an unquoted field
    printf '"a"b,c\r\n'                # text after a closing quote
    printf 'only one field\r\n'
    printf 'x,\377bad\r\n'
    printf 'y,nul\000here\r\n'
    tail -n +2 real.csv
} >hostile.csv
same_12 hostile-stop "$M hostile.csv"
test_expect_success 'hostile-stop: exit 1 at the first bad row, records before it written' '
    echo 1 >want.rc
    test_cmp want.rc hostile-stop.rc
    echo "icl-fmt: hostile.csv:$(($(wc -l <real.csv) + 1)): quote inside an unquoted field at byte offset 3 (quote the whole field and double the quote)" >want.err
    test_cmp want.err hostile-stop.2.err
    test $(wc -l <hostile-stop.2.out) -eq 1486
'
same_12 hostile-skip "$M --on-error skip hostile.csv"
test_expect_success 'hostile-skip: bad rows counted, all good rows written' '
    echo 0 >want.rc
    test_cmp want.rc hostile-skip.rc
    test_grep "5 bad records skipped" hostile-skip.2.err
    test $(wc -l <hostile-skip.2.out) -eq 2972
'
{ cat real.csv; printf 'x,"open\r\nquoted field'; } >open.csv
same_12 open-at-end "$M open.csv"
test_expect_success 'open-at-end: the unterminated field is reported, exit 1' '
    test_grep "unterminated quoted field at end of input" open-at-end.2.err
    echo 1 >want.rc
    test_cmp want.rc open-at-end.rc
'
head -n 1 real.csv >header-only.csv
same_12 header-only "$M header-only.csv"
: >empty.csv
same_12 empty "$M empty.csv"
tr , '\t' <real.csv | head -n 40 >real.tsv
same_12 tsv "-f tsv --on-error skip $M real.tsv"
test_done
