#!/bin/sh
# icl-fmt templates (alpaca, chatml, llama2, plain, template files), chat
# "messages" records, prompt/response pass-through, --map paths.
. "$(dirname "$0")/lib.sh"

cat >in.jsonl <<'X'
{"id":1,"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello."},{"role":"user","content":"2+2?"},{"role":"assistant","content":"4"}],"tag":"x"}
{"instruction":"Sum","input":"1 2","output":"3","system":"S"}
{"instruction":"Name a color.","input":"","output":"Red."}
{"prompt":"p","response":"r","k":[1]}
{"prompt":["a","b"],"response":["c","d"]}
X

test_expect_success 'alpaca: Stanford texts, system replaces the preamble, later turns' '
    icl-fmt -T alpaca in.jsonl >out
    cat >want <<"X"
{"prompt":["Be brief.\n\n### Instruction:\nHi\n\n### Response:","\n\n### Instruction:\n2+2?\n\n### Response:"],"response":["Hello.","4"],"id":1,"tag":"x"}
{"prompt":"S\n\n### Instruction:\nSum\n\n### Input:\n1 2\n\n### Response:","response":"3"}
{"prompt":"Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\nName a color.\n\n### Response:","response":"Red."}
{"prompt":"p","response":"r","k":[1]}
{"prompt":["a","b"],"response":["c","d"]}
X
    test_cmp want out
'
test_expect_success 'alpaca is the default template' '
    icl-fmt in.jsonl >out2 && icl-fmt -T alpaca in.jsonl >out1 && test_cmp out1 out2
'
test_expect_success 'alpaca with input: the prompt_input text' '
    echo "{\"instruction\":\"I\",\"input\":\"X\",\"output\":\"O\"}" | icl-fmt >out
    cat >want <<"X"
{"prompt":"Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.\n\n### Instruction:\nI\n\n### Input:\nX\n\n### Response:","response":"O"}
X
    test_cmp want out
'
test_expect_success 'chatml' '
    icl-fmt -T chatml in.jsonl | head -3 >out
    cat >want <<"X"
{"prompt":["<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n","\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n"],"response":["Hello.","4"],"id":1,"tag":"x"}
{"prompt":"<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nSum\n\n1 2<|im_end|>\n<|im_start|>assistant\n","response":"3"}
{"prompt":"<|im_start|>user\nName a color.<|im_end|>\n<|im_start|>assistant\n","response":"Red."}
X
    test_cmp want out
'
test_expect_success 'llama2' '
    icl-fmt -T llama2 in.jsonl | head -3 >out
    cat >want <<"X"
{"prompt":["[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]","[INST] 2+2? [/INST]"],"response":[" Hello."," 4"],"id":1,"tag":"x"}
{"prompt":"[INST] <<SYS>>\nS\n<</SYS>>\n\nSum\n\n1 2 [/INST]","response":" 3"}
{"prompt":"[INST] Name a color. [/INST]","response":" Red."}
X
    test_cmp want out
'
test_expect_success 'plain' '
    icl-fmt -T plain in.jsonl | head -3 >out
    cat >want <<"X"
{"prompt":["Be brief.\n\nHi\n","\n2+2?\n"],"response":["Hello.","4"],"id":1,"tag":"x"}
{"prompt":"S\n\nSum\n\n1 2\n","response":"3"}
{"prompt":"Name a color.\n","response":"Red."}
X
    test_cmp want out
'
test_expect_success 'template file: placeholders, marker line, newline rules, literal braces' '
    printf "Q: {instruction} {x}\\n{input}\\n\\nA:\\n%%%%\\n {output}\\n" >t.tpl
    echo "{\"instruction\":\"I\",\"input\":\"X\",\"output\":\"O\"}" | icl-fmt -T t.tpl >out
    printf "%s\\n" "{\"prompt\":\"Q: I {x}\\nX\\n\\nA:\",\"response\":\" O\"}" >want
    test_cmp want out
'
test_expect_success 'template file: CRLF file' '
    printf "<{instruction}>\\r\\n%%%%\\r\\n{output}!\\r\\n" >crlf.tpl
    echo "{\"instruction\":\"I\",\"output\":\"O\"}" | icl-fmt -T crlf.tpl >out
    echo "{\"prompt\":\"<I>\",\"response\":\"O!\"}" >want
    test_cmp want out
'
test_expect_code 2 'template file without marker: usage error' '
    printf "{instruction} {output}\\n" >bad.tpl
    icl-fmt -T bad.tpl in.jsonl 2>err; rc=$?
    grep -q "bad.tpl: no marker line" err || exit 9
    exit $rc
'
test_expect_code 2 'template file with {output} in the prompt part' '
    printf "{output}\\n%%%%\\n{output}\\n" >bad2.tpl
    icl-fmt -T bad2.tpl in.jsonl 2>err; rc=$?
    grep -q "{output} must not appear in the prompt part" err || exit 9
    exit $rc
'
test_expect_code 2 'unknown template name' '
    icl-fmt -T nosuch in.jsonl 2>err; rc=$?
    grep -q "unknown template .nosuch." err || exit 9
    exit $rc
'
n_chat=0
bad_chat() {
    n_chat=$((n_chat + 1))
    printf '%s\n' "$2" >c$n_chat.jsonl
    printf '%s\n' "icl-fmt: c$n_chat.jsonl:1: $3" >want$n_chat
    test_expect_success "chat: $1" "
        rc=0; icl-fmt c$n_chat.jsonl >out 2>err || rc=\$?
        test \$rc -eq 1 && test ! -s out
        test_cmp want$n_chat err
    "
}
bad_chat 'ends with user' '{"messages":[{"role":"user","content":"a"}]}' 'the conversation ends with a user message that has no answer'
bad_chat 'two users in a row' '{"messages":[{"role":"user","content":"a"},{"role":"user","content":"b"}]}' "message 2: role 'user' where 'assistant' was expected"
bad_chat 'late system' '{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"system","content":"c"}]}' "message 3: role 'system' where 'user' was expected (a system message first, then user and assistant alternating)"
bad_chat 'content not a string' '{"messages":[{"role":"user","content":1}]}' 'message 1: want {"role", "content"} or {"from", "value"} with a string'
bad_chat 'content null' '{"messages":[{"role":"user","content":null}]}' 'message 1: want an object with string "role" and "content" (or ShareGPT "from" and "value")'
bad_chat 'unknown ShareGPT speaker' '{"conversations":[{"from":"human","value":"a"},{"from":"bot","value":"b"}]}' 'message 2: unknown ShareGPT speaker "from": "bot"'
bad_chat 'prompt without response' '{"prompt":"a"}' "a record with 'prompt' needs 'response' too"
bad_chat 'prompt/completion (OpenAI legacy fine-tuning data)' '{"prompt":"a","completion":"b"}' "a record with 'prompt' needs 'response' too (prompt/completion data, as OpenAI's: --map response=completion)"
bad_chat 'arrays of unequal length' '{"prompt":["a","b"],"response":["c"]}' "'prompt' and 'response' must be two strings or two arrays of strings of equal length"
bad_chat 'nothing to use' '{"text":"a"}' 'no instruction/output, messages (or ShareGPT conversations) or prompt/response keys (keys: text); name them with --map'
bad_chat 'records wrapped in a key' '{"version":1,"data":[{"instruction":"a","output":"b"}]}' "no instruction/output, messages (or ShareGPT conversations) or prompt/response keys (keys: version, data; 'data' holds an array of objects: if they are the records, give icl-fmt that array (jq '.data' FILE > rows.json)); name them with --map"
bad_chat 'key would be overwritten' '{"instruction":"a","output":"b","prompt":"c"}' "key 'prompt' would be overwritten by the rendered record; use --map"
test_expect_success 'chat: empty assistant message drops the record with a warning' '
    echo "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\",\"content\":\"\"}]}" >c.jsonl
    icl-fmt c.jsonl >out 2>err
    test ! -s out
    printf "icl-fmt: c.jsonl:1: empty assistant message 2; record dropped\nicl-fmt: 1 record with an empty, whitespace-only or missing output dropped\n" >want
    test_cmp want err
'
test_expect_success 'whitespace-only outputs are dropped and counted as empty ones' '
    printf "instruction,output\\na,  \\nb,\\nc,\"\\t \\n\"\\nd,x\\n" >ws.csv
    icl-fmt -T plain ws.csv >out 2>err
    printf "%s\\n" "{\"prompt\":\"d\\n\",\"response\":\"x\"}" >want && test_cmp want out
    printf "%s\\n" "icl-fmt: ws.csv:2: whitespace-only output; record dropped" "icl-fmt: ws.csv:3: empty or missing output; record dropped" "icl-fmt: ws.csv:4: whitespace-only output; record dropped" "icl-fmt: 3 records with an empty, whitespace-only or missing output dropped" >want
    test_cmp want err
    printf "%s\\n" "{\"prompt\":\"p\",\"response\":\" \"}" "{\"prompt\":[\"p\",\"q\"],\"response\":[\"r\",\"\\n\"]}" "{\"messages\":[{\"role\":\"user\",\"content\":\"u\"},{\"role\":\"assistant\",\"content\":\"\\t\"}]}" >ws.jsonl
    icl-fmt ws.jsonl >out 2>err
    printf "%s\\n" "{\"prompt\":[\"p\"],\"response\":[\"r\"]}" >want && test_cmp want out
    printf "%s\\n" "icl-fmt: ws.jsonl:1: whitespace-only response; record dropped" "icl-fmt: ws.jsonl:2: whitespace-only response 2: not trained on (the last exchange, left out); the record'"'"'s other answers are" "icl-fmt: ws.jsonl:3: whitespace-only assistant message 2; record dropped" "icl-fmt: 2 records with an empty, whitespace-only or missing output dropped" "icl-fmt: 1 multi-turn record with an empty or whitespace-only answer among others kept: those answers are not trained on" >want
    test_cmp want err
    printf "prompt,response\\np, \\n" | icl-fmt -f csv >out 2>err
    test ! -s out && test_grep "<stdin>:2: whitespace-only response; record dropped" err
'
test_expect_success 'multi-turn records with one empty answer keep the others as targets, the empty one as context' '
    printf "%s\\n" "{\"messages\":[{\"role\":\"user\",\"content\":\"q1\"},{\"role\":\"assistant\",\"content\":\"\"},{\"role\":\"user\",\"content\":\"q2\"},{\"role\":\"assistant\",\"content\":\"a2\"}]}" \
        "{\"conversations\":[{\"from\":\"system\",\"value\":\"S\"},{\"from\":\"human\",\"value\":\"q1\"},{\"from\":\"gpt\",\"value\":\"a1\"},{\"from\":\"human\",\"value\":\"q2\"},{\"from\":\"gpt\",\"value\":\" \"},{\"from\":\"human\",\"value\":\"q3\"},{\"from\":\"gpt\",\"value\":\"a3\"}]}" \
        "{\"prompt\":[\"p1\",\"p2\",\"p3\"],\"response\":[\"r1\",\"\",\"r3\"]}" \
        "{\"messages\":[{\"role\":\"user\",\"content\":\"q1\"},{\"role\":\"assistant\",\"content\":\"\"},{\"role\":\"user\",\"content\":\"q2\"},{\"role\":\"assistant\",\"content\":\"\"}]}" >mt.jsonl
    icl-fmt -T plain mt.jsonl >out 2>err
    cat >want <<-\EOT
	{"prompt":["q1\n\nq2\n"],"response":["a2"]}
	{"prompt":["S\n\nq1\n","\nq2\n \nq3\n"],"response":["a1","a3"]}
	{"prompt":["p1","p2p3"],"response":["r1","r3"]}
	EOT
    test_cmp want out
    cat >want <<-\EOT
	icl-fmt: mt.jsonl:1: empty assistant message 2: not trained on (context of the next turn); the record'"'"'s other answers are
	icl-fmt: mt.jsonl:2: whitespace-only assistant message 5: not trained on (context of the next turn); the record'"'"'s other answers are
	icl-fmt: mt.jsonl:3: empty response 2: not trained on (context of the next turn); the record'"'"'s other answers are
	icl-fmt: mt.jsonl:4: empty assistant message 2; record dropped (no answer to train on)
	icl-fmt: 1 record with an empty, whitespace-only or missing output dropped
	icl-fmt: 3 multi-turn records with an empty or whitespace-only answer among others kept: those answers are not trained on
	EOT
    test_cmp want err
'
test_expect_success 'ShareGPT conversations (from/value) are read as messages, with or without --map' '
    printf "%s\\n" "{\"conversations\":[{\"from\":\"system\",\"value\":\"S\"},{\"from\":\"human\",\"value\":\"Hi\"},{\"from\":\"gpt\",\"value\":\"Yo\"},{\"from\":\"user\",\"value\":\"Q\"},{\"from\":\"assistant\",\"value\":\"A\"}],\"id\":4}" >sg.jsonl
    icl-fmt -T chatml sg.jsonl >out
    printf "%s\\n" "{\"prompt\":[\"<|im_start|>system\\nS<|im_end|>\\n<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n\",\"\\n<|im_start|>user\\nQ<|im_end|>\\n<|im_start|>assistant\\n\"],\"response\":[\"Yo\",\"A\"],\"id\":4}" >want
    test_cmp want out
    sed s/conversations/turns/ sg.jsonl | icl-fmt -T chatml --map messages=turns >out2
    test_cmp want out2
    echo "{\"messages\":[{\"role\":\"user\",\"content\":\"M\"},{\"role\":\"assistant\",\"content\":\"N\"}],\"conversations\":1}" | icl-fmt -T plain >out3
    printf "%s\\n" "{\"prompt\":[\"M\\n\"],\"response\":[\"N\"],\"conversations\":1}" >want3
    test_cmp want3 out3
    echo "{\"instruction\":\"I\",\"output\":\"O\",\"conversations\":\"none\"}" | icl-fmt -T plain >out4
    printf "%s\\n" "{\"prompt\":\"I\\n\",\"response\":\"O\",\"conversations\":\"none\"}" >want4
    test_cmp want4 out4
'
test_expect_success '--map renames, passes the rest through in order; response= for t0-style data' '
    echo "{\"a\":1,\"q\":\"Q\",\"b\":2,\"ans\":\"A\"}" | icl-fmt -T plain --map instruction=q --map output=ans >out
    printf "%s\\n" "{\"prompt\":\"Q\\n\",\"response\":\"A\",\"a\":1,\"b\":2}" >want
    test_cmp want out
    echo "{\"prompt\":\"P\",\"completion\":\"C\",\"z\":0}" | icl-fmt --map response=completion >out
    echo "{\"prompt\":\"P\",\"response\":\"C\",\"z\":0}" >want
    test_cmp want out
'
test_expect_success '--map paths into nested JSON: a[0].b and a.0.b' '
    echo "{\"i\":\"I\",\"inst\":[{\"in\":\"X\",\"out\":\"O\"},{\"in\":\"Y\",\"out\":\"P\"}],\"k\":3}" >n.jsonl
    icl-fmt -T plain --map "instruction=i,input=inst[0].in,output=inst.1.out" n.jsonl >out
    printf "%s\\n" "{\"prompt\":\"I\\n\\nX\\n\",\"response\":\"P\",\"k\":3}" >want
    test_cmp want out
'
test_expect_code 2 'bad --map key is a usage error' 'icl-fmt --map foo=bar in.jsonl'
test_expect_code 2 'bad --map syntax is a usage error' 'icl-fmt --map instruction in.jsonl'
test_expect_code 2 'template file with invalid UTF-8: named, never copied into records' '
    printf "Q: {instruction}\\n\\377\\n%%%%\\n{output}\\n" >u8.tpl &&
    echo "{\"instruction\":\"a\",\"output\":\"b\"}" >one.jsonl &&
    icl-fmt -T u8.tpl one.jsonl >out 2>err; rc=$?
    grep -q "u8.tpl:2: invalid UTF-8 at byte offset 0" err || exit 9
    test ! -s out || exit 8
    exit $rc
'

test_expect_code 2 'a directory as template: the reason is given' '
    mkdir -p tdir && icl-fmt -T tdir one.jsonl 2>err; rc=$?
    grep -q "tdir: Is a directory" err || exit 9
    exit $rc
'

if test -r /dev/zero; then
test_expect_success 'a template that never ends (/dev/zero) is refused at the size cap' '
	rc=0; echo "{\"instruction\":\"a\",\"output\":\"b\"}" | icl-fmt -T /dev/zero >out 2>err || rc=$?
	test $rc -eq 2 && test_grep "^icl-fmt: /dev/zero: larger than 16777216 bytes" err && test ! -s out
'
else
test_skip 'a template that never ends (/dev/zero) is refused at the size cap' 'no /dev/zero'
fi

test_done
