#!/bin/sh
# icl-fmt on real data: awesome_chatgpt_prompts.csv (CRLF rows, LF inside
# quoted fields, doubled quotes), alpaca_en_demo.json (a JSON array),
# self_instruct_seed_tasks.jsonl (nested instances), gsm8k (--map).
# Expected outputs come from Python's csv/json modules and Stanford Alpaca's
# PROMPT_DICT: tests/data/fmt/make_expected.py.
. "$(dirname "$0")/lib.sh"
D=$DATA/fmt
gunzip -c "$D/awesome_chatgpt_prompts.csv.gz" >prompts.csv
gunzip -c "$D/alpaca_en_demo.json.gz" >alpaca.json

test_expect_success 'awesome prompts: 1486 records, every field byte for byte as Python csv reads it' '
    icl-fmt --map instruction=act,output=prompt -T "$D/raw.tpl" prompts.csv >out
    test $(wc -l <out) -eq 1486
    awk "NR % 50 == 1" out >sample
    test_cmp "$D/awesome.sample.jsonl" sample
    sha256sum <out | cut -d" " -f1 >sum
    test_cmp "$D/awesome.sha256" sum
'
test_expect_success 'awesome prompts from stdin, detected as CSV, same output' '
    icl-fmt --map instruction=act,output=prompt -T "$D/raw.tpl" <prompts.csv >out2
    test_cmp out out2
'
test_expect_success 'awesome prompts with -f csv: same output' '
    icl-fmt -f csv --map instruction=act,output=prompt -T "$D/raw.tpl" prompts.csv >a
    test_cmp out a
'
test_expect_success 'alpaca_en_demo.json: 999 records equal to Stanford Alpaca formatting' '
    icl-fmt alpaca.json >out
    test $(wc -l <out) -eq 999
    awk "NR % 50 == 1" out >sample
    test_cmp "$D/alpaca.sample.jsonl" sample
    sha256sum <out | cut -d" " -f1 >sum
    test_cmp "$D/alpaca.sha256" sum
'
test_expect_success 'alpaca: -f json and detection agree; 412 records use the input prompt' '
    icl-fmt -f json alpaca.json >out2
    test_cmp out out2
    test $(grep -c "paired with an input" out) -eq 412
'
test_expect_success 'self-instruct seed tasks: instances[0] via --map paths, 175 records' '
    icl-fmt -T plain --map "input=instances[0].input,output=instances[0].output" \
        "$D/self_instruct_seed_tasks.jsonl" >out 2>err
    test $(wc -l <out) -eq 175
    test ! -s err
    head -1 out >first
    cat >want <<"X"
{"prompt":"Is there anything I can eat for a breakfast that doesn'"'"'t include eggs, yet includes protein, and has roughly 700-1000 calories?\n","response":"Yes, you can have 1 oatmeal banana protein shake and 4 strips of bacon. The oatmeal banana protein shake may contain 1/2 cup oatmeal, 60 grams whey protein powder, 1/2 medium banana, 1tbsp flaxseed oil and 1/2 cup watter, totalling about 550 calories. The 4 strips of bacon contains about 200 calories.","id":"seed_task_0","name":"breakfast_suggestion","is_classification":false}
X
    test_cmp want first
'
test_expect_success 'self-instruct without a map: no record has an answer: exit 1 naming the keys and --map' '
    { icl-fmt "$D/self_instruct_seed_tasks.jsonl" >out 2>err; test $? -eq 1; } &&
    test ! -s out &&
    test $(grep -c "empty or missing output; record dropped" err) -eq 5 &&
    test_grep "^icl-fmt: no record has the key '"'"'output'"'"' for the answers (the first record'"'"'s keys: id, name, instruction, instances, is_classification); name it with --map output=KEY$" err
'
test_expect_success 'gsm8k: question/answer via --map, 200 records, keys consumed' '
    icl-fmt --map instruction=question,output=answer "$D/gsm8k_test_200.jsonl" >out
    test $(wc -l <out) -eq 200
    if grep -q "\"question\":" out; then exit 1; fi
    head -1 out | grep -q "^{\"prompt\":\"Below is an instruction that describes a task. Write a response that appropriately completes the request.\\\\n\\\\n### Instruction:\\\\nJanet"
    head -1 out | grep -q "#### 18\"}$"
'
test_expect_success 'several input files are read in turn' '
    icl-fmt --map instruction=question,output=answer "$D/gsm8k_test_200.jsonl" "$D/gsm8k_test_200.jsonl" >out
    test $(wc -l <out) -eq 400
'
test_done
