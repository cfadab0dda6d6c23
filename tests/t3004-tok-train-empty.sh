#!/bin/sh
# icl-tok train with no training text (no input, empty files, records
# without text): an error naming the inputs, exit 1, and no -o file
# written or changed; one word of text is enough.
. "$(dirname "$0")/lib.sh"

test_expect_success 'no input on stdin: "no training text", exit 1, nothing written' '
	test_must_fail icl-tok train --vocab-size 300 -o t.json </dev/null 2>err &&
	echo "icl-tok: <stdin>: no training text" >want && test_cmp want err &&
	test "$(ls -A | grep -v "^\.log$" | tr "\n" " ")" = "err want "
'

test_expect_success 'empty files and records with no or empty text: the files are named' '
	: >empty.txt &&
	printf "{\"other\": \"x\"}\n{\"text\": \"\", \"prompt\": [\"\"]}\n" >r.jsonl &&
	test_must_fail icl-tok train --vocab-size 300 --special "<s>" -o t.json empty.txt r.jsonl 2>err &&
	echo "icl-tok: empty.txt, r.jsonl: no training text" >want && test_cmp want err &&
	! test -e t.json
'

test_expect_success 'an existing -o file is left as it was' '
	echo keep >t.json &&
	test_must_fail icl-tok train --vocab-size 300 -o t.json empty.txt 2>err &&
	test_grep "no training text" err &&
	test "$(cat t.json)" = keep
'

test_expect_success 'one word is text: 0 merges, the byte alphabet and the specials' '
	printf "{\"text\": \"a\"}\n" >a.jsonl &&
	icl-tok train --vocab-size 300 --special "<s>" -o t.json empty.txt a.jsonl 2>err &&
	test_grep "t.json: 0 merges, vocabulary 257" err &&
	grep -q "\"<s>\": 0," t.json &&
	echo "{\"text\":\"ab\"}" | icl-tok encode -t t.json --no-eos >e.tok &&
	test "$(tail -n 1 e.tok)" = "$(printf "\t65 66")" # "!" is id 1: "a" 65, "b" 66
'

test_done
