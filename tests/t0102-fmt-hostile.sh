#!/bin/sh
# icl-fmt on hostile CSV/TSV/JSONL/JSON inputs: each gives its right output
# or a clear error (exact message and exit status checked).
. "$(dirname "$0")/lib.sh"

# ok NAME ARGS... : icl-fmt -T plain ARGS must exit 0; stdout in NAME.out
# expect_out NAME TEXT : NAME.out must equal TEXT (printf-interpreted)
# fails NAME CODE MESSAGE ARGS... : exit CODE and stderr exactly MESSAGE
# (records before the bad one are written: see the test after ragged)
n_fail=0
fails() {
    name=$1 code=$2; n_fail=$((n_fail + 1))
    printf '%s\n' "$3" >want.$n_fail
    shift 3
    test_expect_success "$name: exit $code, right message" "
        rc=0; icl-fmt -T plain $* >$name.out 2>$name.err || rc=\$?
        test \$rc -eq $code &&
        test_cmp want.$n_fail $name.err
    "
}
out_is() {
    name=$1 want=$2; shift 2
    test_expect_success "$name: right output" "
        icl-fmt -T plain $* >$name.out 2>$name.err
        printf '$want' >$name.want
        test_cmp $name.want $name.out
    "
}

printf '\357\273\277instruction,output\nhi,there\n' >bom.csv
out_is bom '{"prompt":"hi\\n","response":"there"}\n' bom.csv
test_expect_success 'bom: header name is clean (no BOM in a passed-through key)' '
    printf "\357\273\277id,instruction,output\n7,a,b\n" >bom2.csv
    icl-fmt -T plain bom2.csv >out
    printf "{\"prompt\":\"a\\\\n\",\"response\":\"b\",\"id\":\"7\"}\n" >want
    test_cmp want out
'
printf 'instruction,output\r\nhi,"a\r\nb"\r\nx,y' >crlf.csv
out_is crlf '{"prompt":"hi\\n","response":"a\\r\\nb"}\n{"prompt":"x\\n","response":"y"}\n' crlf.csv
printf 'instruction,output\nq,"say ""hi"", then, go"\n' >dq.csv
out_is doubled-quotes '{"prompt":"q\\n","response":"say \\"hi\\", then, go"}\n' dq.csv
printf 'instruction,output\n  a  ,  b\t\n' >sp.csv
out_is spaces-kept '{"prompt":"  a  \\n","response":"  b\\t"}\n' sp.csv
printf 'instruction\toutput\n"a\tb"\t c \n' >t.tsv
out_is tsv '{"prompt":"a\\tb\\n","response":" c "}\n' t.tsv
out_is tsv-forced '{"prompt":"a\\tb\\n","response":" c "}\n' -f tsv t.tsv
printf 'instruction,output\n\nhi,there\n\n\n' >blank.csv
out_is blank-lines '{"prompt":"hi\\n","response":"there"}\n' blank.csv

printf 'instruction,output\nhi,there\nx,y,z\nq,r\n' >ragged.csv
fails ragged 1 'icl-fmt: ragged.csv:3: row has 3 fields, the header has 2' ragged.csv
test_expect_success 'ragged: the records before the bad row are written' '
    rc=0; icl-fmt -T plain ragged.csv >out 2>/dev/null || rc=$?
    test $rc -eq 1
    printf "{\"prompt\":\"hi\\\\n\",\"response\":\"there\"}\n" >want
    test_cmp want out
'
test_expect_success 'ragged with --shuffle: nothing is written' '
    rc=0; icl-fmt -T plain --shuffle ragged.csv >out 2>/dev/null || rc=$?
    test $rc -eq 1 && test ! -s out
'
test_expect_success 'ragged: --on-error skip skips and counts' '
    icl-fmt -T plain --on-error skip ragged.csv >out 2>err
    printf "{\"prompt\":\"hi\\\\n\",\"response\":\"there\"}\n{\"prompt\":\"q\\\\n\",\"response\":\"r\"}\n" >want
    test_cmp want out
    printf "icl-fmt: ragged.csv:3: row has 3 fields, the header has 2 (skipped)\nicl-fmt: 1 bad record skipped\n" >want
    test_cmp want err
'
printf 'instruction,output\na,"x\nb"\nc,d,e\n' >ragged2.csv
fails ragged-line-of-row-start 1 'icl-fmt: ragged2.csv:4: row has 3 fields, the header has 2' ragged2.csv
printf 'instruction,output\na,b\nc\n' >short.csv
fails short-row 1 'icl-fmt: short.csv:3: row has 1 field, the header has 2' short.csv
printf 'instruction,output\nhi,"there\nmore\n' >unterm.csv
fails unterminated-quote 1 'icl-fmt: unterm.csv:2: unterminated quoted field at end of input' unterm.csv
printf 'instruction,output\nhi,"' >qeof.csv
fails quote-at-eof 1 'icl-fmt: qeof.csv:2: unterminated quoted field at end of input' qeof.csv
printf 'instruction,output\nhi,there"\n' >stray.csv
fails stray-quote 1 'icl-fmt: stray.csv:2: quote inside an unquoted field at byte offset 8 (quote the whole field and double the quote)' stray.csv
printf 'instruction,output\nhi,"the"re\n' >after.csv
fails text-after-quote 1 'icl-fmt: after.csv:2: text after a closing quote at byte offset 8' after.csv
printf 'instruction,output\nhi,"a\ncaf\351"\n' >badutf.csv
fails invalid-utf8-csv 1 'icl-fmt: badutf.csv:3: invalid UTF-8 at byte offset 3 (byte 0xE9)' badutf.csv
printf 'instruction,output\nhi,a\000b\n' >nul.csv
fails nul-csv 1 'icl-fmt: nul.csv:2: NUL byte at byte offset 4' nul.csv
: >empty.csv
test_expect_success 'empty file: no records, a warning, exit 0' '
    icl-fmt empty.csv >out 2>err
    test ! -s out
    echo "icl-fmt: empty.csv: empty input, no records" >want
    test_cmp want err
'
printf 'instruction,output\r\n' >hdr.csv
test_expect_success 'header only: no records, a warning, exit 0' '
    icl-fmt hdr.csv >out 2>err
    test ! -s out
    echo "icl-fmt: hdr.csv: header only, no records" >want
    test_cmp want err
'
printf 'a,a\nx,y\n' >dup.csv
fails duplicate-column 1 "icl-fmt: dup.csv:1: duplicate column name 'a'" dup.csv
printf 'q,a\nx,y\n' >nocols.csv
fails no-known-columns 1 'icl-fmt: nocols.csv:1: no instruction/output or prompt/response columns (columns: q, a); name them with --map instruction=COL,output=COL' nocols.csv
printf 'instruction,answer\nx,y\n' >noout.csv
fails no-answer-column 1 "icl-fmt: noout.csv:1: no column 'output' for the answers (columns: instruction, answer); name it with --map output=COL" noout.csv
printf 'instruction,response\nx,y\n' >ir.csv
fails instruction-response 1 "icl-fmt: ir.csv:1: no column 'output' for the answers (columns: instruction, response); name it with --map output=response" ir.csv
printf 'instruction,output,response\nx,y,z\n' >ior.csv
fails instruction-output-response 1 "icl-fmt: ior.csv:1: column 'response' would be overwritten by the rendered record, and column 'output' is the answer already: drop one of them, or --map output=response to read 'response' as the answer instead" ior.csv
printf 'q,prompt,output\nx,y,z\n' >qpo.csv
fails mapped-instruction-prompt 1 "icl-fmt: qpo.csv:1: column 'prompt' would be overwritten by the rendered record, and column 'q' is the instruction already: drop one of them, or --map instruction=prompt to read 'prompt' as the instruction instead" --map instruction=q qpo.csv
printf 'prompt,output\nx,y\n' >po.csv
fails prompt-output 1 "icl-fmt: po.csv:1: column 'prompt' would be overwritten by the rendered record; use --map (--map instruction=prompt reads it as the instruction)" po.csv
printf 'messages\n"[{""role"":""user"",""content"":""Hi""}]"\n' >msgs.csv
fails csv-messages-no-template 1 "icl-fmt: msgs.csv: chat messages (column 'messages') are read from CSV only with --chat-template MODEL" msgs.csv
printf '{"instruction":"a","answer":"b"}\n{"instruction":"c","answer":"d"}\n' >noout.jsonl
test_expect_success 'JSON Lines whose records have no answer key: exit 1 naming the keys; one with an answer: kept' '
    { icl-fmt noout.jsonl >out 2>err; test $? -eq 1; } &&
    test ! -s out &&
    test_grep "^icl-fmt: no record has the key .output. for the answers (the first record.s keys: instruction, answer); name it with --map output=KEY$" err &&
    printf "{\"instruction\":\"e\",\"output\":\"f\"}\n" >>noout.jsonl &&
    icl-fmt noout.jsonl >out 2>err &&
    test $(wc -l <out) -eq 1 &&
    test_grep "2 records with an empty, whitespace-only or missing output dropped" err
'

fails missing-mapped-column 1 "icl-fmt: nocols.csv:1: no column 'zz' for --map output (columns: q, a)" --map output=zz nocols.csv
head -c 1048576 /dev/zero | tr '\000' y >y1m
{ echo instruction,output; printf 'x,"'; cat y1m; printf '"\n'; } >big.csv
{ printf '{"prompt":"x\\n","response":"'; cat y1m; printf '"}\n'; } >big.want
test_expect_success '1 MB field survives byte for byte' '
    icl-fmt -T plain big.csv >out
    test_cmp big.want out
'

# JSON Lines and JSON arrays
printf '{"instruction":"a","output":"caf\351"}\n' >badutf.jsonl
fails invalid-utf8-jsonl 1 'icl-fmt: badutf.jsonl:1: invalid UTF-8 at byte offset 32 (byte 0xE9)' badutf.jsonl
printf '{"instruction":"a","output":"\\ud83e"}\n' >lone.jsonl
fails lone-surrogate 1 "icl-fmt: lone.jsonl:1: bad JSON at byte offset 36: invalid Unicode '\\uD83E' near '\"\\ud83e\"'" lone.jsonl
printf '{"instruction":"a","output":"\\ud83e\\udd17"}\n' >pair.jsonl
out_is surrogate-pair '{"prompt":"a\\n","response":"\360\237\244\227"}\n' pair.jsonl
printf '{"instruction":"a","output":"x\\u0000"}\n' >nul.jsonl
fails escaped-nul 1 "icl-fmt: nul.jsonl:1: bad JSON at byte offset 37: a string holds \\u0000 (NUL), which records may not" nul.jsonl
printf '\r\n{"instruction":"a","output":"b"}\r\n\r\n{"instruction":"c","output":"d"}' >crlf.jsonl
out_is jsonl-crlf-blank-no-final-newline '{"prompt":"a\\n","response":"b"}\n{"prompt":"c\\n","response":"d"}\n' crlf.jsonl
printf '{"instruction":"a","output":"b"}\n{"instruction":"a",\n{"instruction":"c","output":"d"}\n' >badjson.jsonl
fails bad-json-line 1 "icl-fmt: badjson.jsonl:2: bad JSON at byte offset 19: string or '}' expected near end of line" badjson.jsonl
test_expect_success 'bad JSON line skipped with --on-error skip' '
    icl-fmt -T plain --on-error skip badjson.jsonl >out 2>err
    test $(wc -l <out) -eq 2
    grep -q "^icl-fmt: 1 bad record skipped$" err
'
printf '{"instruction":"a","output":3}\n' >num.jsonl
out_is number-as-text '{"prompt":"a\\n","response":"3"}\n' num.jsonl
printf '{"instruction":"a","output":["x"]}\n' >arr.jsonl
fails output-is-array 1 "icl-fmt: arr.jsonl:1: 'output' is an array" arr.jsonl
printf '[1]\n' >x.jsonl
fails jsonl-not-object 1 'icl-fmt: x.jsonl:1: a record must be a JSON object' -f jsonl x.jsonl
# a first record that is a JSON string, then records: JSON Lines (its error), not a one-column CSV
printf '"hello"\n{"instruction":"a","output":"b"}\n' >str.jsonl
fails jsonl-string-first 1 "icl-fmt: str.jsonl:1: bad JSON at byte offset 7: '[' or '{' expected near '\"hello\"'" str.jsonl
printf '42\n\n{"instruction":"a","output":"b"}\n' >num1.jsonl
fails jsonl-number-first 1 "icl-fmt: num1.jsonl:1: bad JSON at byte offset 2: '[' or '{' expected near '42'" num1.jsonl
printf '"hello"\nworld\n' >one.csv
out_is one-quoted-column-csv '{"prompt":"world\\n","response":"world"}\n' --map instruction=hello,output=hello one.csv
printf '"prompt"\n{name} is a placeholder\n{}\n' >brace.csv
out_is one-column-csv-brace-rows '{"prompt":"{name} is a placeholder\\n","response":"{name} is a placeholder"}\n{"prompt":"{}\\n","response":"{}"}\n' --map instruction=prompt,output=prompt brace.csv
printf '[{"instruction":"a","output":"b"},\n {"instruction":"c","output":"d\377"}]\n' >bad.json
fails json-array-invalid-utf8 1 'icl-fmt: bad.json:2: array element 2: invalid UTF-8 at byte offset 31 (byte 0xFF)' bad.json
printf '[{"instruction":"a","output":"b"} {"x":1}]' >bad2.json
fails json-array-missing-comma 1 "icl-fmt: bad2.json:1: expected ',' or ']' after array element 1" bad2.json
printf '[{"instruction":"a","output":"b"},\n{"instruction":"c"' >bad3.json
fails json-array-truncated 1 'icl-fmt: bad3.json:2: end of input inside array element 2' bad3.json
printf '[{"instruction":"a","output":"b"}, 7]' >bad4.json
fails json-array-non-object 1 'icl-fmt: bad4.json:1: array element 2 is not a JSON object' bad4.json
# a TSV header whose column name holds a comma (as many commas as TABs) is
# read as CSV: the message says so and how to read it as TSV (not with -f)
printf 'instruction\tanswer, short\nhi\tthere, you\n' >comma.tsv
fails tsv-header-read-as-csv 1 "icl-fmt: comma.tsv:1: no instruction/output or prompt/response columns (columns: instruction	answer,  short; read as CSV: if it is TSV, give -f tsv); name them with --map instruction=COL,output=COL" comma.tsv
fails tsv-header-given-f 1 "icl-fmt: comma.tsv:1: no column 'output' for the answers (columns: instruction, answer, short); name it with --map output=COL" -f tsv comma.tsv
# one JSON object over several lines (json.dump(..., indent=2) of {"data": [...]}) is not JSON Lines
printf '{\n  "data": [\n    {"instruction": "a", "output": "b"}\n  ]\n}\n' >wrapped.json
fails json-object-several-lines 1 "icl-fmt: wrapped.json:1: a JSON object over several lines, not JSON Lines (one object a line) nor a JSON array of objects: if it holds the records in a key ({\"data\": [...]}), give icl-fmt that array (jq '.data' FILE > rows.json); pretty-printed objects one after another: jq -c . FILE > rows.jsonl" wrapped.json
# json.dump writes an array on one line: a record's messages name its element
printf '[{"instruction":"a","output":"b"},{"instruction":"c","output":""},{"instruction":"d","output":{"x":1}}]' >one.json
fails json-array-one-line-element 1 "icl-fmt: one.json:1: array element 2: empty or missing output; record dropped
icl-fmt: one.json:1: array element 3: 'output' is an object" one.json
printf '\357\273\277 [ {"instruction":"a","output":"}]\\"{"} ]' >ok.json
out_is json-array-bom-brackets-in-strings '{"prompt":"a\\n","response":"}]\\"{"}\n' ok.json
printf '[]' >e.json
test_expect_success 'empty JSON array: no records' '
    icl-fmt e.json >out 2>err && test ! -s out && grep -q "empty input" err
'
test_done
