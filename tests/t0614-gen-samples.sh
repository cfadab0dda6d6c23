#!/bin/sh
# icl-gen --num-return-sequences: N samples per record, each from its own
# RNG stream (seed, record + sample * 2^32): sample 0 is the single-sample
# output, more samples keep the earlier ones, any batch size gives the same.
. "$(dirname "$0")/lib.sh"
mkdir m && cp "$DATA"/model/stories260K/model/* m/ && cp "$DATA/tok/bytelevel-512.json" m/tokenizer.json

cat >in.jsonl <<'J'
{"id":1,"prompt":"Once upon a time"}
{"id":2,"prompt":"The cat"}
{"id":3,"prompt":["Hi","Hello!","How are you?"]}
J
# drop "sample" and keep the records of sample S (python3: JSON in, JSON out)
pick() { python3 -c '
import json, sys
s = int(sys.argv[1])
for l in sys.stdin:
    r = json.loads(l)
    if r.pop("sample", 0) == s:
        print(json.dumps(r, ensure_ascii=False))' "$1"; }

test_expect_success 'N samples per record, in order, with "sample"' '
	icl-gen -m m -n 12 --temperature 1 --seed 5 --num-return-sequences 3 in.jsonl >s3 &&
	test $(wc -l <s3) -eq 9 &&
	python3 -c "
import json
rs = [json.loads(l) for l in open(\"s3\")]
assert [(r[\"id\"], r[\"sample\"]) for r in rs] == [(i, j) for i in (1, 2, 3) for j in range(3)], rs
assert len({r[\"completion\"] for r in rs}) > 3, \"samples do not differ\"
"
'

test_expect_success 'sample 0 is the single-sample output' '
	icl-gen -m m -n 12 --temperature 1 --seed 5 in.jsonl >s1 &&
	pick 0 <s1 >s1n && pick 0 <s3 >s3_0 &&
	test_cmp s1n s3_0
'

test_expect_success 'more samples keep the earlier ones, at any batch size' '
	icl-gen -m m -n 12 --temperature 1 --seed 5 --num-return-sequences 2 -b 1 in.jsonl >s2 &&
	pick 1 <s2 >a && pick 1 <s3 >b && test_cmp a b &&
	icl-gen -m m -n 12 --temperature 1 --seed 5 --num-return-sequences 3 -b 4 in.jsonl >s3b &&
	test_cmp s3 s3b
'

test_expect_success '--num-return-sequences: bad values and --ids are usage errors' '
	{ icl-gen -m m --num-return-sequences 0 in.jsonl 2>err; test $? -eq 2; } &&
	{ icl-gen -m m --ids --num-return-sequences 2 </dev/null 2>err; test $? -eq 2; } &&
	test_grep "does not apply to --ids" err
'

test_expect_success '--num-return-sequences N > 1 without sampling is a usage error (N greedy copies)' '
	{ icl-gen -m m -n 4 --num-return-sequences 2 in.jsonl >out 2>err; test $? -eq 2; } &&
	test_grep "num-return-sequences 2 needs sampling" err && test ! -s out &&
	{ icl-gen -m m -n 4 --greedy --num-return-sequences 2 in.jsonl 2>err; test $? -eq 2; } &&
	test_grep "greedy with --greedy" err &&
	{ icl-gen -m m -n 4 --temperature 0 --num-return-sequences 2 in.jsonl 2>err; test $? -eq 2; } &&
	icl-gen -m m -n 4 --num-return-sequences 1 in.jsonl >one && test $(wc -l <one) = 3
'

test_done
