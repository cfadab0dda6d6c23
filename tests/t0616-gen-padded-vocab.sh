#!/bin/sh
# A model whose config vocab_size (96) is larger than its tokenizer (40 ids),
# as Qwen2.5's padded vocabulary: ids without a token are never generated
# (issue 18, defect 5; llama-tiny's greedy continuations use ids 44-94).
. "$(dirname "$0")/lib.sh"

mkdir pad && cp "$DATA/model/llama-tiny/model/"* pad/ &&
printf '{"version":"1.0","added_tokens":[],"normalizer":null,"pre_tokenizer":null,"post_processor":null,"decoder":null,"model":{"type":"BPE","vocab":{' >pad/tokenizer.json &&
i=0 && for c in a b c d e f g h i j k l m n o p q r s t u v w x y z 0 1 2 3 4 5 6 7 8 9 . , !; do
	printf '"%s":%d,' "$c" $i >>pad/tokenizer.json; i=$((i + 1)); done &&
printf '" ":39},"merges":[]}}\n' >>pad/tokenizer.json

test_expect_success 'without the tokenizer, greedy ids go beyond 40 (the case is real)' '
	printf "1 2\n3 4 5\n" | icl-gen -m "$DATA/model/llama-tiny/model" --ids -n 30 >raw &&
	cut -f2 raw | tr " " "\n" | awk "\$1 >= 40 { n++ } END { exit !(n > 0) }"
'

test_expect_success 'with it, no id at or above the tokenizer'"'"'s 40 is generated' '
	printf "1 2\n3 4 5\n" | icl-gen -m pad --ids -n 30 >out &&
	test $(wc -l <out) -eq 2 &&
	cut -f2 out | tr " " "\n" | awk "\$1 >= 40 { exit 1 } { n++ } END { exit !(n >= 2) }"
'

test_expect_success 'text generation no longer stops at "not in the vocabulary"' '
	echo "{\"prompt\":\"ab\"}" | icl-gen -m pad -n 30 >out 2>err &&
	test_grep "\"completion\":" out && ! test -s err
'

test_done
