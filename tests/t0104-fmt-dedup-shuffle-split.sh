#!/bin/sh
# icl-fmt --dedup, --shuffle, --split: counts, determinism from --seed,
# nothing lost or invented.
. "$(dirname "$0")/lib.sh"
gunzip -c "$DATA/fmt/alpaca_en_demo.json.gz" >a.json
icl-fmt a.json >all
sort all >all.sorted

awk '!seen[$0]++' all >uniq   # alpaca_en_demo.json repeats 14 of its records
test_expect_success '--dedup keeps the first of each prompt+response, counts the rest' '
    test $(wc -l <uniq) -eq 985
    icl-fmt --dedup a.json a.json >out 2>err
    test_cmp uniq out
    echo "icl-fmt: 1013 duplicate records dropped" >want
    test_cmp want err
'
test_expect_success '--dedup looks at the rendered text: same instruction, different template text' '
    printf "%s\n" "{\"instruction\":\"a\",\"output\":\"b\",\"id\":1}" \
        "{\"instruction\":\"a\",\"output\":\"b\",\"id\":2}" \
        "{\"instruction\":\"a\",\"input\":\"x\",\"output\":\"b\"}" >d.jsonl
    icl-fmt --dedup -T plain d.jsonl >out 2>err
    test $(wc -l <out) -eq 2
    grep -q "\"id\":1" out
    if grep -q "\"id\":2" out; then exit 1; fi
'
test_expect_success '--shuffle: a permutation, the same for the same seed' '
    icl-fmt --shuffle --seed 7 a.json >s1
    icl-fmt --shuffle --seed 7 a.json >s2
    test_cmp s1 s2
    if cmp -s s1 all; then exit 1; fi
    sort s1 >s1.sorted
    test_cmp all.sorted s1.sorted
'
test_expect_success '--shuffle: another seed gives another order; default seed is 0' '
    icl-fmt --shuffle --seed 8 a.json >s3
    if cmp -s s1 s3; then exit 1; fi
    icl-fmt --shuffle a.json >d1
    icl-fmt --shuffle --seed 0 a.json >d2
    test_cmp d1 d2
'
test_expect_success '--split 0.9: 899 + 100 records, disjoint, input order kept, deterministic' '
    icl-fmt --split 0.9 --split-out val --seed 3 a.json >train
    test $(wc -l <train) -eq 899
    test $(wc -l <val) -eq 100
    sort train val >u
    test_cmp all.sorted u
    if cmp -s all train; then exit 1; fi
    # input order: both are subsequences of the input (greedy match)
    awk "NR==FNR{a[++n]=\$0;next} {while(i<n && a[++i]!=\$0);if(a[i]!=\$0)bad=1} END{exit bad}" all train
    awk "NR==FNR{a[++n]=\$0;next} {while(i<n && a[++i]!=\$0);if(a[i]!=\$0)bad=1} END{exit bad}" all val
    icl-fmt --split 0.9 --split-out val2 --seed 3 a.json >train2
    test_cmp train train2 && test_cmp val val2
    icl-fmt --split 0.9 --split-out val3 --seed 4 a.json >train3
    if cmp -s val val3; then exit 1; fi
'
test_expect_success '--shuffle --split: shuffled parts, together all records' '
    icl-fmt --shuffle --split 0.5 --split-out b --seed 1 -o a a.json
    test $(wc -l <a) -eq 500 && test $(wc -l <b) -eq 499
    sort a b >u
    test_cmp all.sorted u
'
test_expect_success '--split 1: everything to the output, an empty --split-out' '
    icl-fmt --split 1 --split-out none a.json >x
    test_cmp all x
    test -f none && test ! -s none
'
test_expect_success '--split that rounds to an empty part says so (few records); --split 1 does not' '
    head -20 all >few.json && n=20 &&
    icl-fmt --split 0.99 --split-out v99 few.json >t99 2>err &&
    test_grep "icl-fmt: --split 0.99 of $n records leaves v99 empty: round(0.99 x $n) = $n to the output, 0 to v99" err &&
    test ! -s v99 &&
    icl-fmt --split 0.001 --split-out v0 -o t0 few.json 2>err &&
    test_grep "icl-fmt: --split 0.001 of $n records leaves t0 empty: round(0.001 x $n) = 0 to the output, $n to v0" err &&
    test ! -s t0 &&
    icl-fmt --split 1 --split-out v1 few.json >/dev/null 2>err && test ! -s err &&
    icl-fmt --split 0.5 --split-out v5 few.json >/dev/null 2>err && test ! -s err
'
test_expect_success '--dedup --shuffle --split together on a doubled input' '
    icl-fmt --dedup --shuffle --split 0.8 --split-out v --seed 5 a.json a.json >t 2>err
    test $(wc -l <t) -eq 794 && test $(wc -l <v) -eq 198
    sort t v >u
    sort uniq >uniq.sorted
    test_cmp uniq.sorted u
'
test_done
