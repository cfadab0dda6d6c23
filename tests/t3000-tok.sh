#!/bin/sh
# icl-tok encode / decode / train as a black box.
. "$(dirname "$0")/lib.sh"

gzip -dc "$DATA/tok/gpt2.json.gz" >gpt2.json
gzip -dc "$DATA/tok/llama2.json.gz" >llama2.json

test_expect_success 'encode: prompt TAB response EOS, text lines start with TAB' '
	printf "%s\n" "{\"prompt\":\"Hello\",\"response\":\" world\"}" \
		"{\"text\":\"wait ! it\"}" "" \
		"{\"prompt\":[\"a\",\"b\"],\"response\":[\"c\",\"d\"],\"id\":7}" >r.jsonl &&
	icl-tok encode -t gpt2.json r.jsonl >r.tok &&
	printf "15496\t995 50256\n\t17077 5145 340 50256\n64\t66 50256\t65\t67 50256\n" >want &&
	tail -n +2 r.tok >got && test_cmp want got &&
	head -1 r.tok | grep -q "^#icl-tokens 1 fingerprint=xxh3:[0-9a-f]\{16\} vocab_size=50257 bos=-1 eos=50256 pad=-1 source=gpt2.json$"
'

test_expect_success 'decode gives the records back, spaces untouched' '
	icl-tok decode -t gpt2.json r.tok >back.jsonl &&
	printf "%s\n" "{\"prompt\":\"Hello\",\"response\":\" world\"}" \
		"{\"text\":\"wait ! it\"}" \
		"{\"prompt\":[\"a\",\"b\"],\"response\":[\"c\",\"d\"]}" >want &&
	test_cmp want back.jsonl
'

test_expect_success 'sentencepiece style: no second prefix space, round trip exact' '
	printf "%s\n" "{\"prompt\":\"Hello\",\"response\":\"world\"}" \
		"{\"prompt\":\"Q: x\",\"response\":\" A: y\"}" >sp.jsonl &&
	icl-tok encode -t llama2.json --bos sp.jsonl >sp.tok &&
	sed -n 2p sp.tok >got && printf "1 15043\t11526 2\n" >want && test_cmp want got &&
	icl-tok decode -t llama2.json sp.tok >back.jsonl && test_cmp sp.jsonl back.jsonl
'

test_expect_success 'BOS is never doubled by a template that writes it' '
	echo "{\"prompt\":\"<s>Hello\",\"response\":\"x\"}" | icl-tok encode -t llama2.json --bos >b.tok &&
	tail -1 b.tok | cut -f1 >got && echo "1 15043" >want && test_cmp want got
'

test_expect_success 'special-token text stays text unless --parse-special' '
	echo "{\"text\":\"a<|endoftext|>\"}" >s.jsonl &&
	icl-tok encode -t gpt2.json --no-eos s.jsonl | tail -1 >got &&
	printf "\t64 27 91 437 1659 5239 91 29\n" >want && test_cmp want got &&
	icl-tok encode -t gpt2.json --no-eos --parse-special s.jsonl | tail -1 >got &&
	printf "\t64 50256\n" >want && test_cmp want got
'

test_expect_success '--max-len cuts the prompt from the left and skips long responses' '
	printf "%s\n" "{\"prompt\":\"one two three four\",\"response\":\" five\"}" \
		"{\"prompt\":\"a\",\"response\":\" b c d e f g\"}" >m.jsonl &&
	icl-tok encode -t gpt2.json --max-len 4 m.jsonl >m.tok 2>err &&
	tail -n +2 m.tok >got && printf "1115 1440\t1936 50256\n" >want && test_cmp want got &&
	grep -q "1 example skipped" err
'

test_expect_success '--threads keeps the input order' '
	gzip -dc "$DATA/tok/corpus.txt.gz" | head -20000 | tr -d "\\\\\"\t\r" |
		awk "NF { printf \"{\\\"prompt\\\":\\\"%s\\\",\\\"response\\\":\\\" %d\\\"}\\n\", \$0, NR }" >many.jsonl &&
	icl-tok encode -t gpt2.json --threads 1 many.jsonl >t1.tok &&
	icl-tok encode -t gpt2.json --threads 2 many.jsonl >t2.tok &&
	test_cmp t1.tok t2.tok && test $(wc -l <t1.tok) -gt 15000 &&
	icl-tok decode -t gpt2.json t1.tok >back.jsonl && test_cmp many.jsonl back.jsonl
'

cat >q.jsonl <<'END'
{"prompt":"<|im_start|>user\nHi<|im_end|>\n","response":"Hello!"}
END
test_expect_success 'a model directory: specials from tokenizer_config.json' '
	mkdir -p qwen && gzip -dc "$DATA/tok/qwen3.json.gz" >qwen/tokenizer.json &&
	cp "$DATA/tok/qwen3_tokenizer_config.json" qwen/tokenizer_config.json &&
	icl-tok encode -t qwen --parse-special q.jsonl >q.tok &&
	head -1 q.tok | grep -q " vocab_size=151669 bos=-1 eos=151645 pad=151643 source=qwen$" &&
	tail -1 q.tok >got && printf "151644 872 198 13048 151645 198\t9707 0 151645\n" >want && test_cmp want got &&
	mkdir -p qg && cp qwen/tokenizer.json qg/ &&
	echo "{\"bos_token_id\": 151643, \"eos_token_id\": [151643, 151645]}" >qg/generation_config.json &&
	icl-tok encode -t qg --bos q.jsonl | head -1 | grep -q " bos=151643 eos=151643 "
'

test_expect_success 'decode refuses tokens of another tokenizer by the header, before their ids' '
	test_must_fail icl-tok decode -t llama2.json r.tok 2>err &&
	test_grep "^icl-tok: r.tok:1: tokens were made by another tokenizer (fingerprint xxh3:" err &&
	test_grep ", vocab_size 50257; this one is xxh3:[0-9a-f]*, 32000): the lines. header names gpt2.json$" err
'

test_expect_success 'decode names file and line of a bad id' '
	printf "1 2\n3  4\n" >bad.tok &&
	test_must_fail icl-tok decode -t gpt2.json bad.tok 2>err &&
	grep -q "^icl-tok: bad.tok:2: " err &&
	printf "1 99999\n" >big.tok &&
	test_must_fail icl-tok decode -t gpt2.json big.tok 2>err &&
	grep -q "big.tok:1: token id 99999 is not below the vocabulary size 50257" err
'

test_expect_success 'bad records are errors with file:line' '
	printf "%s\n" "{\"prompt\":\"a\",\"response\":\"b\"}" "{\"prompt\":\"a\"}" >br.jsonl &&
	test_must_fail icl-tok encode -t gpt2.json br.jsonl >/dev/null 2>err &&
	grep -q "^icl-tok: br.jsonl:2: record has \"prompt\" without \"response\"" err
'

test_expect_success '--on-error skip counts bad records' '
	printf "%s\n" "{\"prompt\":\"a\",\"response\":\"b\"}" "{\"prompt\":\"a\"}" "not json" >br2.jsonl &&
	icl-tok encode -t gpt2.json --on-error skip br2.jsonl >out.tok 2>err &&
	test $(wc -l <out.tok) -eq 2 && grep -q "2 bad records skipped" err &&
	grep -q "br2.jsonl:3: " err
'

test_expect_code 2 'usage: unknown command' 'icl-tok frobnicate'
test_expect_code 2 'usage: encode without -t' 'icl-tok encode </dev/null'
test_expect_code 1 'unsupported component is named' '
	echo "{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}" >u.json &&
	icl-tok encode -t u.json </dev/null 2>err; rc=$?; grep -q "Unigram" err; exit $rc
'

test_expect_success 'train writes a tokenizer that encodes' '
	gzip -dc "$DATA/tok/corpus.txt.gz" | head -2000 >c.txt &&
	icl-tok train --vocab-size 300 --special "<|endoftext|>" -o t.json c.txt 2>err &&
	grep -q "43 merges" err &&
	echo "{\"text\":\"First Citizen\"}" | icl-tok encode -t t.json --no-eos >e.tok &&
	echo "{\"text\":\"First Citizen\"}" >want &&
	icl-tok decode -t t.json e.tok >got && test_cmp want got
'

test_expect_success 'encode: empty or whitespace-only responses are no targets: dropped or context, counted (as icl-fmt)' '
	printf "%s\n" "{\"prompt\":\"Hello\",\"response\":\"\"}" "{\"prompt\":\"Hi\",\"response\":\" ok\"}" \
		"{\"prompt\":[\"a\",\"b\"],\"response\":[\"x\",\"\"]}" "{\"prompt\":\"Hello\",\"response\":\"  \"}" \
		"{\"text\":\"\"}" "{\"prompt\":[\"a\",\"b\",\"c\"],\"response\":[\" \",\"y\",\"\"]}" >e.jsonl &&
	icl-tok encode -t gpt2.json e.jsonl >e.tok 2>err &&
	printf "17250\t12876 50256\n64\t87 50256\n64 220 65\t88 50256\n" >want &&
	grep -v "^#" e.tok >got && test_cmp want got &&
	cat >want <<-\EOT &&
	icl-tok: e.jsonl:1: empty response; record dropped
	icl-tok: e.jsonl:3: empty response 2: not trained on (context of the next turn, or left out when last); the record'"'"'s other responses are
	icl-tok: e.jsonl:4: whitespace-only response; record dropped
	icl-tok: e.jsonl:5: empty text; record dropped
	icl-tok: e.jsonl:6: whitespace-only response 1 and others: not trained on (context of the next turn, or left out when last); the record'"'"'s other responses are
	icl-tok: 3 records with an empty or whitespace-only response (or text) dropped
	icl-tok: 2 multi-turn records with an empty or whitespace-only response among others kept: those responses are not trained on
	EOT
	test_cmp want err &&
	grep -v text e.jsonl | icl-fmt 2>/dev/null | icl-tok encode -t gpt2.json 2>err2 | grep -v "^#" >got2 &&
	test $(wc -l <got2) = 3 && test ! -s err2
'

test_expect_success 'encode: characters a tokenizer.json cannot spell are dropped as tokenizers drops them, and counted' '
	cat >mini.json <<-\EOT &&
	{"version":"1.0","added_tokens":[],"normalizer":null,"pre_tokenizer":null,"post_processor":null,"decoder":null,
	"model":{"type":"BPE","dropout":null,"unk_token":null,"fuse_unk":false,"byte_fallback":false,"vocab":{"a":0,"b":1,"ab":2},"merges":["a b"]}}
	EOT
	printf "%s\n" "{\"prompt\":\"ab\",\"response\":\"bxa\"}" "{\"prompt\":\"ab\",\"response\":\"b\"}" "{\"prompt\":\"\\u00e9\",\"response\":\"b\"}" >d.jsonl &&
	icl-tok encode -t mini.json --no-eos d.jsonl >d.tok 2>err &&
	printf "2\t1 0\n2\t1\n\t1\n" >want && grep -v "^#" d.tok >got && test_cmp want got &&
	echo "icl-tok: 2 records have characters the tokenizer has no token, byte-fallback token or unk_token for (2 in all, e.g. U+0078): dropped from the ids, as Hugging Face tokenizers drops them" >want &&
	test_cmp want err
'

test_expect_success '--help and the man page list the same options' '
	icl-tok --help >help &&
	for o in --bos --no-bos --eos --no-eos --parse-special --max-len --threads --on-error --vocab-size --special --min-frequency --output; do
		grep -q -- "$o" help || exit 1
		grep -q -- "$(echo "$o" | sed "s/-/\\\\\\\\-/g")" "$TESTS_DIR/../man/man1/icl-tok.1" || { echo "man lacks $o"; exit 1; }
	done
'

test_expect_success 'decode keeps a BOS id encode did not add (BOS is a chat token, as SmolLM2'"'"'s <|im_start|>): a round trip' '
	mkdir -p qb && cp qwen/tokenizer.json qb/ &&
	echo "{\"bos_token\": \"<|im_start|>\", \"eos_token\": \"<|im_end|>\", \"add_bos_token\": false}" >qb/tokenizer_config.json &&
	printf "%s\n" "{\"prompt\":[\"<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n\"],\"response\":[\"Yo<|im_end|>\"],\"chat\":true}" >chat.jsonl &&
	icl-tok encode -t qb chat.jsonl >chat.tok &&
	head -1 chat.tok | grep -q " bos=-1 eos=151645 " &&
	sed -n 2p chat.tok | grep -q "^151644 872 " &&
	icl-tok decode -t qb chat.tok >chat.back &&
	printf "%s\n" "{\"prompt\":\"<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n\",\"response\":\"Yo\"}" >want &&
	test_cmp want chat.back &&
	icl-tok encode -t qb --parse-special chat.back >again.tok && test_cmp chat.tok again.tok &&
	echo "{\"prompt\":\"a\",\"response\":\"b\"}" >ab.jsonl &&
	icl-tok encode -t qb --bos ab.jsonl >ab.tok &&
	head -1 ab.tok | grep -q " bos=151644 eos=151645 " && sed -n 2p ab.tok | grep -q "^151644 64	65 151645$" &&
	icl-tok decode -t qb ab.tok >ab.back && test_cmp ab.jsonl ab.back &&
	icl-tok encode -t qb --no-eos ab.jsonl >ne.tok && head -1 ne.tok | grep -q " bos=-1 eos=-1 " &&
	printf "64\t65 151645\n" >>ne.tok && icl-tok decode -t qb ne.tok >ne.back &&
	printf "%s\n" "{\"prompt\":\"a\",\"response\":\"b\"}" "{\"prompt\":\"a\",\"response\":\"b<|im_end|>\"}" >want && test_cmp want ne.back
'

test_done
