#!/bin/sh
# icl-fmt: --help, --version, usage errors (exit 2) against data errors
# (exit 1), the man page in step with --help, SIGPIPE.
. "$(dirname "$0")/lib.sh"
printf 'instruction,output\na,b\n' >ok.csv

test_expect_success '--help teaches every option and exits 0' '
    icl-fmt --help >out
    for o in --format --template --map --dedup --shuffle --split --split-out --seed \
             --on-error --output --quiet --help --version; do
        grep -q -- "$o" out || { echo "missing $o"; exit 1; }
    done
'
test_expect_success 'the --help examples of --map and a template run as printed' '
    printf "act,prompt\nLinux Terminal,Act as a terminal.\n" >prompts.csv &&
    icl-fmt --help | sed -n "s/^  \(icl-fmt --map instruction=act.*\)/\1/p" >cmd &&
    test $(wc -l <cmd) -eq 1 &&
    sh -e cmd >out &&
    grep -q "<|im_start|>user" out
'
test_expect_success '--version names icl and the version' '
    icl-fmt --version >out
    grep -q "^icl-fmt (icl) [0-9]" out
'
usage() {
    test_expect_code 2 "usage error: $1" "icl-fmt $2 ok.csv"
}
usage 'unknown option' '--nosuch'
usage 'unknown format' '-f xml'
usage 'bad --map key' '--map foo=bar'
usage 'bad --map entry' '--map instruction'
usage 'bad --seed' '--seed x1'
usage 'negative --seed' '--seed -1'
usage 'bad --split' '--split 1.5 --split-out v'
usage 'zero --split' '--split 0 --split-out v'
usage '--split without --split-out' '--split 0.5'
usage '--split-out without --split' '--split-out v'
usage 'bad --on-error' '--on-error maybe'
usage 'unknown template' '-t nosuch'
test_expect_success 'usage errors say what and point to --help' '
    rc=0; icl-fmt -f xml ok.csv 2>err || rc=$?
    test $rc -eq 2
    printf "icl-fmt: unknown format '"'"'xml'"'"' (csv, tsv, jsonl, json)\nTry '"'"'icl-fmt --help'"'"' for more information.\n" >want
    test_cmp want err
'
test_expect_code 1 'a missing input file is exit 1' 'icl-fmt nosuch.csv'
test_expect_success 'missing input file message names it' '
    rc=0; icl-fmt nosuch.csv 2>err || rc=$?
    test $rc -eq 1
    grep -q "^icl-fmt: .*nosuch.csv.*No such file" err
'
test_expect_code 1 'bad data is exit 1' 'printf "instruction,output\na\n" | icl-fmt'
test_expect_success '-o writes the file, stdout stays empty' '
    icl-fmt -o o.jsonl ok.csv >out
    test ! -s out && test -s o.jsonl
'
test_expect_success 'quiet on SIGPIPE (| head)' '
    gunzip -c "$DATA/fmt/alpaca_en_demo.json.gz" | icl-fmt 2>err | head -1 >/dev/null
    test ! -s err
'
test_expect_success '-q silences warnings' '
    printf "instruction,output\na,\n" | icl-fmt -q >out 2>err
    test ! -s err && test ! -s out
'
test_expect_success 'an input that is a folder is one error, exit 1, in every format' '
    mkdir -p adir &&
    for fmt in "" "-f csv" "-f json" "-f jsonl" "--threads 2 -f tsv"; do
        rc=0; icl-fmt $fmt adir >out 2>err || rc=$?
        echo "icl-fmt: adir: is a folder, not a file" >want &&
        test $rc -eq 1 && test_cmp want err && test ! -s out || exit 1
    done
'
test_done
