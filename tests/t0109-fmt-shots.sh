#!/bin/sh
# icl-fmt --shots: k-shot prompts from a pool of demonstrations (issue 19).
# References: tests/data/shots/make_shots.py (rank_bm25, sacreBLEU's
# tokenizers, transformers' apply_chat_template).
. "$(dirname "$0")/lib.sh"
S="$DATA/shots"

test_expect_success 'similar: the BM25 ranking of rank_bm25 BM25Okapi (English, 13a tokens)' '
	icl-fmt -q --shots 4 --shot-selection similar --shots-from "$S/pool.jsonl" "$S/queries.jsonl" >sim.jsonl &&
	jq -c .shots sim.jsonl >got &&
	jq -c .shots "$S/similar.jsonl" >want &&
	test $(wc -l <got) = 6 &&
	cmp got want
'

test_expect_success 'similar: Chinese pool (zh tokens chosen from the script), ids from the pool records' '
	icl-fmt -q --shots 3 --shot-selection similar --shots-from "$S/pool-zh.jsonl" "$S/queries-zh.jsonl" >simzh.jsonl &&
	jq -c .shots simzh.jsonl >got &&
	jq -c .shots "$S/similar-zh.jsonl" >want &&
	test $(wc -l <got) = 3 &&
	cmp got want
'

test_expect_success 'chat template: shots are the turns apply_chat_template renders, all context' '
	mkdir smol && cp "$DATA/chat/templates/smollm2.jinja" smol/chat_template.jinja &&
	printf "{\"bos_token\": \"<|im_start|>\", \"eos_token\": \"<|im_end|>\"}" >smol/tokenizer_config.json &&
	icl-fmt --chat-template smol --shots 3 --shot-selection fixed --shots-from "$S/pool.jsonl" "$S/queries.jsonl" >chat.jsonl &&
	cmp chat.jsonl "$S/chat-fixed3.jsonl" &&
	test "$(jq -c "[(.prompt | length), (.response | length)]" chat.jsonl | sort -u)" = "[1,1]"
'

test_expect_success 'template: shots and query are the turns of one conversation, joined' '
	icl-fmt -q -T chatml --shots 2 --shot-selection fixed --shots-from "$S/pool.jsonl" "$S/queries.jsonl" | head -1 >t.jsonl &&
	jq -c "{messages: [(\$p[0], \$p[1], \$q) | {role: \"user\", content: (.instruction + \"\n\n\" + .input)}, {role: \"assistant\", content: .output}]}" \
		--slurpfile p "$S/pool.jsonl" --argjson q "$(head -1 "$S/queries.jsonl")" -n >conv.jsonl &&
	icl-fmt -q -T chatml conv.jsonl >turns.jsonl &&
	test "$(jq -r ".prompt[0] + .response[0] + .prompt[1] + .response[1] + .prompt[2]" turns.jsonl)" = "$(jq -r .prompt t.jsonl)" &&
	test "$(jq -r .response t.jsonl)" = "negative" &&
	test "$(jq -c .shots t.jsonl)" = "[0,1]"
'

test_expect_success 'random: the same seed gives the same shots, another seed others' '
	icl-fmt -q --shots 4 --seed 7 --shots-from "$S/pool.jsonl" "$S/pool.jsonl" >a.jsonl &&
	icl-fmt -q --shots 4 --seed 7 --shots-from "$S/pool.jsonl" "$S/pool.jsonl" >b.jsonl &&
	icl-fmt -q --shots 4 --seed 8 --shots-from "$S/pool.jsonl" "$S/pool.jsonl" >c.jsonl &&
	cmp a.jsonl b.jsonl &&
	if cmp a.jsonl c.jsonl; then exit 1; fi &&
	test "$(jq -c "[.shots | length, (unique | length)]" a.jsonl | sort -u)" = "[4,4]" &&
	test "$(jq "[.shots[] | select(. < 0 or . > 15)] | length" a.jsonl | sort -u)" = 0
'

test_expect_success 'no leakage: a record never gets itself or its duplicate as a shot' '
	for seed in 1 2 3 4 5; do
		icl-fmt -q --shots 15 --seed $seed --shots-from "$S/pool.jsonl" "$S/pool.jsonl" >self.jsonl &&
		jq -c "[input_line_number - 1, (.shots | length), (.shots | index(input_line_number - 1))]" self.jsonl >chk &&
		test "$(awk -F, "\$2 != 15 || \$3 != \"null]\"" chk | wc -l)" = 0 || exit 1
		icl-fmt -q --shots 15 --seed $seed --shots-from "$S/pool.jsonl" "$S/queries.jsonl" >q.jsonl &&
		test "$(sed -n 3p q.jsonl | jq -c "[(.shots | length), (.shots | index(2))]")" = "[15,null]" || exit 1
	done &&
	test "$(sed -n 1p q.jsonl | jq ".shots | length")" = 15 &&
	icl-fmt -q --shots 3 --shot-selection fixed --shots-from "$S/pool.jsonl" "$S/queries.jsonl" | sed -n 3p | jq -c .shots >fx &&
	test "$(cat fx)" = "[0,1,3]"
'

# the labels of the shots of each record, counted: {"negative":n,...}
labels() {
	jq -c --slurpfile p "$S/pool.jsonl" "[.shots[] | \$p[.].output] | group_by(.) | map({(.[0]): length}) | add // {}" "$@"
}

test_expect_success 'balance: the shots cover the labels as evenly as K allows' '
	for sel in random similar fixed; do
		icl-fmt -q --shots 3 --balance-labels --shot-selection $sel --shots-from "$S/pool.jsonl" "$S/queries.jsonl" >b3.jsonl &&
		test "$(labels b3.jsonl | sort -u)" = "{\"negative\":1,\"neutral\":1,\"positive\":1}" || exit 1
		icl-fmt -q --shots 5 --balance-labels --shot-selection $sel --shots-from "$S/pool.jsonl" "$S/queries.jsonl" >b5.jsonl &&
		labels b5.jsonl | jq -c "[.[]] | sort" | sort -u >counts &&
		test "$(cat counts)" = "[1,2,2]" || exit 1
	done &&
	icl-fmt -q --shots 6 --balance-labels --shots-from "$S/pool.jsonl" "$S/queries.jsonl" >b6.jsonl &&
	test "$(labels b6.jsonl | sort -u)" = "{\"negative\":2,\"neutral\":2,\"positive\":2}" &&
	icl-fmt -q --shots 8 --balance-labels --shots-from "$S/pool.jsonl" "$S/queries.jsonl" >b8.jsonl &&
	test "$(labels b8.jsonl | sort -u)" = "{\"negative\":3,\"neutral\":2,\"positive\":3}"
'

test_expect_success 'balance: the order is seeded (same seed same order, label order varies)' '
	icl-fmt -q --shots 3 --balance-labels --seed 1 --shots-from "$S/pool.jsonl" "$S/pool.jsonl" >o1.jsonl &&
	icl-fmt -q --shots 3 --balance-labels --seed 1 --shots-from "$S/pool.jsonl" "$S/pool.jsonl" >o2.jsonl &&
	cmp o1.jsonl o2.jsonl &&
	jq -c --slurpfile p "$S/pool.jsonl" "[.shots[] | \$p[.].output]" o1.jsonl | sort -u >orders &&
	test $(wc -l <orders) -ge 3
'

test_expect_success 'budget: the most shots whose prompt fits, dropped from the end, query never cut' '
	mkdir q && gzip -dc "$DATA/tok/qwen3.json.gz" >q/tokenizer.json &&
	for j in 0 1 2 3 4 5 6; do
		icl-fmt -q --shots $j --shot-selection fixed --shots-from "$S/pool.jsonl" "$S/queries.jsonl" >k$j.jsonl &&
		icl-tok encode -t q --parse-special --no-bos --no-eos k$j.jsonl | grep -v "^#" | cut -f1 | awk "{print NF}" >n$j || exit 1
	done &&
	paste n0 n1 n2 n3 n4 n5 n6 >table &&
	N=$(awk "\$3 > m {m = \$3} END {print m - 1}" table) &&
	icl-fmt -q --shots 6 --shot-selection fixed --max-prompt-tokens $N -t q/tokenizer.json --shots-from "$S/pool.jsonl" "$S/queries.jsonl" >bud.jsonl &&
	jq ".shots | length" bud.jsonl >kept &&
	awk -v N=$N "{k = 0; for (j = 1; j <= NF; j++) if (\$j <= N) k = j - 1; print k}" table >want &&
	cmp kept want &&
	test "$(sort -u kept | wc -l)" -ge 2 &&
	i=0 && while read k; do
		i=$((i + 1)) &&
		test "$(sed -n ${i}p bud.jsonl)" = "$(sed -n ${i}p k$k.jsonl)" || exit 1
	done <kept &&
	icl-fmt -q --shots 2 --max-prompt-tokens 1 -t q/tokenizer.json --shots-from "$S/pool.jsonl" "$S/queries.jsonl" >tiny.jsonl &&
	test "$(jq -c .shots tiny.jsonl | sort -u)" = "[]" &&
	jq -c "[.prompt, .response]" tiny.jsonl >t1 &&
	jq -c "[.prompt, .response]" k0.jsonl >t2 &&
	cmp t1 t2
'

test_expect_success 'ids: an "id" key or column names the pool record; other keys pass through' '
	printf "id,instruction,input,output\nr1,Q,a,x\nr2,Q,b,y\n" >p.csv &&
	printf "%s\n" "{\"instruction\":\"Q\",\"input\":\"c\",\"output\":\"z\",\"id\":9}" >one.jsonl &&
	icl-fmt -T plain --shots 2 --shot-selection fixed --shots-from p.csv one.jsonl >o.jsonl &&
	test "$(cat o.jsonl)" = "{\"prompt\":\"Q\\n\\na\\nx\\nQ\\n\\nb\\ny\\nQ\\n\\nc\\n\",\"response\":\"z\",\"shots\":[\"r1\",\"r2\"],\"id\":9}"
'

test_expect_code 2 '--shots without --shots-from is a usage error' '
	icl-fmt --shots 2 "$S/queries.jsonl"
'

test_expect_code 2 '--max-prompt-tokens without a tokenizer is a usage error' '
	icl-fmt --shots 2 --shots-from "$S/pool.jsonl" --max-prompt-tokens 100 "$S/queries.jsonl"
'

test_expect_success 'records without instruction/output: an error naming the file and line' '
	printf "%s\n" "{\"instruction\":\"Q\",\"output\":\"A\"}" "{\"prompt\":\"P\",\"response\":\"R\"}" >mixed.jsonl &&
	if icl-fmt --shots 1 --shots-from "$S/pool.jsonl" mixed.jsonl >m.out 2>m.err; then exit 1; fi &&
	grep -F "mixed.jsonl:2: --shots needs instruction/output records" m.err &&
	if icl-fmt --shots 1 --shots-from mixed.jsonl "$S/queries.jsonl" >m.out 2>m.err; then exit 1; fi &&
	grep -F "mixed.jsonl:2: a --shots-from pool needs instruction/output records" m.err &&
	if icl-fmt --shots 1 --shots-from missing.jsonl "$S/queries.jsonl" 2>m.err; then exit 1; fi &&
	grep -F "missing.jsonl" m.err
'

# The real model's GGUF carries SmolLM2-135M-Instruct's chat template (the
# reference's) and its tokenizer: what the demo's k-shot prompts use
# (examples/Makefile, make icl).
GGUF="${ICL_SMOLLM2_GGUF:-}"
if [ -z "$GGUF" ] || [ ! -r "$GGUF" ]; then
	test_skip 'SmolLM2 GGUF: shots in its chat template, its tokenizer for the budget' 'ICL_SMOLLM2_GGUF missing: make deps fetches it'
else
test_expect_success 'SmolLM2 GGUF: shots in its chat template as apply_chat_template; its tokenizer for the budget' '
	icl-fmt -q --chat-template "$GGUF" --shots 3 --shot-selection fixed --shots-from "$S/pool.jsonl" "$S/queries.jsonl" >g.jsonl &&
	cmp g.jsonl "$S/chat-fixed3.jsonl" &&
	icl-tok encode -t "$GGUF" g.jsonl | grep -v "^#" | cut -f1 | awk "{print NF}" >n3 &&
	N=$(sort -n n3 | sed -n 3p) &&
	icl-fmt -q --chat-template "$GGUF" --shots 3 --shot-selection fixed --max-prompt-tokens $N -t "$GGUF" \
		--shots-from "$S/pool.jsonl" "$S/queries.jsonl" >gb.jsonl &&
	jq ".shots | length" gb.jsonl >kept &&
	icl-tok encode -t "$GGUF" gb.jsonl | grep -v "^#" | cut -f1 | awk "{print NF}" >nb &&
	paste n3 kept nb >table &&
	test "$(awk -v N=$N "(\$1 <= N) != (\$2 == 3) || (\$3 > N && \$2 > 0) {bad++} END {print bad + 0}" table)" = 0 &&
	test "$(awk "\$2 < 3" table | wc -l)" -ge 1 &&
	test "$(awk "\$2 == 3" table | wc -l)" -ge 3
'
fi

test_done
