#!/bin/sh
# icl-gen --chat: one user message a line of standard input, each reply
# streamed and ended by a newline.  Turn k gives exactly what the record
# mode gives on a "messages" record holding the conversation so far (the
# KV cache kept between turns feeds only the new ids: the same ids prove
# the reuse exact); /reset, /exit, EOF, --system; lines continued by a
# trailing backslash; the context full (oldest
# exchanges dropped, a message too long refused); errors.
# stories260K with the byte-level tokenizer bytelevel-512 and a small
# template (as t0616).
. "$(dirname "$0")/lib.sh"
mkdir m && cp "$DATA"/model/stories260K/model/* m/ && cp "$DATA/tok/bytelevel-512.json" m/tokenizer.json
mkdir c && cp m/* c/ &&
printf '%s' '{% for m in messages %}[{{ m.role }}] {{ m.content }}
{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}' >c/chat_template.jinja

# reply MODEL RECORD: what the record mode generates for RECORD, followed by
# one newline (as --chat writes it).  --stream writes the text and an empty
# line; the file's last line (the empty one) is dropped.
reply() {
	printf '%s\n' "$2" >rec.jsonl &&
	icl-gen -q -m "$1" -n 12 --greedy --stream rec.jsonl >rep.out &&
	sed '$d' rep.out
}
# json TEXT: TEXT as a JSON string (the text of a reply, read from a file
# that ends with the newline --chat adds)
json() {
	printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g; s/	/\\t/g' | awk 'NR > 1 { printf "\\n" } { printf "%s", $0 }'
}
u1="Once upon a time"
u2="The dog ran to the park"
U1="{\"role\":\"user\",\"content\":\"$u1\"}"
U2="{\"role\":\"user\",\"content\":\"$u2\"}"

test_expect_success 'two turns piped in: turn 2 is the record mode on turn 1, its reply and turn 2' '
	reply c "{\"messages\":[$U1]}" >r1 &&
	test -s r1 &&
	r1=$(cat r1) && a1="{\"role\":\"assistant\",\"content\":\"$(json "$r1")\"}" &&
	reply c "{\"messages\":[$U1,$a1,$U2]}" >r2 &&
	cat r1 r2 >want &&
	printf "%s\n" "$u1" "$u2" | icl-gen -m c -n 12 --greedy --chat >got 2>err &&
	test_cmp want got &&
	test ! -s err &&
	printf "%s\n" "$u1" "$u2" | icl-gen -m c -n 12 --greedy -i >got2 &&
	test_cmp want got2 &&
	printf "%s\n" "$u1" "$u2" | icl-gen -m c -n 12 --greedy --interactive --threads 1 >got3 &&
	test_cmp want got3 &&
	reply c "{\"messages\":[$U2]}" >r2alone && ! cmp -s r2 r2alone
'

test_expect_success 'a line ending in a backslash goes on on the next: one message with a newline there' '
	reply c "{\"messages\":[{\"role\":\"user\",\"content\":\"Once upon\\na time\\n\\nthe end\"}]}" >r1 &&
	test -s r1 &&
	printf "%s\n" "Once upon\\" "a time\\" "\\" "the end" | icl-gen -m c -n 12 --greedy --chat >got 2>err &&
	test_cmp r1 got && test ! -s err &&
	printf "%s\n" "Once upon\\" "a time\\" "\\" "the end" "$u2" | icl-gen -m c -n 12 --greedy --chat >got2 &&
	test $(wc -l <got2) -ge 2 && head -c $(wc -c <r1) got2 >first && test_cmp r1 first &&
	printf "%s\n" "Once upon\\" "a time\\" "\\" | icl-gen -m c -n 12 --greedy --chat >got3 &&
	reply c "{\"messages\":[{\"role\":\"user\",\"content\":\"Once upon\\na time\\n\"}]}" >r3 &&
	test_cmp r3 got3 &&
	printf "%s\n" "\\" "  \\" "" | icl-gen -m c -n 12 --greedy --chat >got4 2>err && test ! -s got4 && test ! -s err &&
	printf "%s\n" "/reset\\" "x" | icl-gen -m c -n 12 --greedy --chat >got5 2>err && test -s got5 && test ! -s err &&
	reply c "{\"messages\":[{\"role\":\"user\",\"content\":\"Once upon\"}]}" >r6 &&
	printf "%s" "Once upon\\" | icl-gen -m c -n 12 --greedy --chat >got6 && test_cmp r6 got6 &&
	printf "%s\n" "Once upon\\" "" "$u1" | icl-gen -m c -n 12 --greedy --chat >got7 &&
	reply c "{\"messages\":[{\"role\":\"user\",\"content\":\"Once upon\\n\"}]}" >r7 &&
	head -c $(wc -c <r7) got7 >first7 && test_cmp r7 first7
'

test_expect_success '/reset forgets the conversation: the first answer again; blank lines are nothing' '
	reply c "{\"messages\":[$U1]}" >r1 && r1=$(cat r1) &&
	a1="{\"role\":\"assistant\",\"content\":\"$(json "$r1")\"}" &&
	reply c "{\"messages\":[$U1,$a1,$U2]}" >r2 &&
	cat r1 r2 r1 >want &&
	printf "%s\n" "$u1" "" "  " "$u2" " /reset " "$u1" | icl-gen -m c -n 12 --greedy --chat >got 2>err &&
	test_cmp want got && test ! -s err
'

test_expect_success '--system is the first message, kept by /reset' '
	S="{\"role\":\"system\",\"content\":\"You tell stories.\"}" &&
	reply c "{\"messages\":[$S,$U1]}" >r1 &&
	reply c "{\"messages\":[$S,$U2]}" >r2 &&
	cat r1 r2 >want &&
	printf "%s\n" "$u1" "/reset" "$u2" | icl-gen -m c -n 12 --greedy --chat --system "You tell stories." >got &&
	test_cmp want got
'

test_expect_success 'EOF ends with status 0 (a last line without a newline is a turn); /exit and /quit end at once' '
	icl-gen -m c -n 12 --greedy --chat </dev/null >got 2>err && test ! -s got && test ! -s err &&
	reply c "{\"messages\":[$U1]}" >r1 &&
	printf "%s" "$u1" | icl-gen -m c -n 12 --greedy --chat >got && test_cmp r1 got &&
	printf "%s\n" "$u1" /exit "$u2" | icl-gen -m c -n 12 --greedy --chat >got && test_cmp r1 got &&
	printf "%s\n" "$u1" /quit "$u2" | icl-gen -m c -n 12 --greedy --chat >got && test_cmp r1 got &&
	printf "%s\n" /help | icl-gen -m c --chat >got 2>err && test ! -s got &&
	grep -F "/reset" err
'

test_expect_success 'an unknown command is not sent: said on stderr, the session goes on, status 1' '
	reply c "{\"messages\":[$U1]}" >r1 &&
	rc=0; printf "%s\n" /bogus "$u1" | icl-gen -m c -n 12 --greedy --chat >got 2>err || rc=$?
	test $rc -eq 1 && test_cmp r1 got &&
	grep -F "<stdin>:1: unknown command '"'"'/bogus'"'"'" err
'

# byte-level BPE: about 2.5 characters a token; the context is 512
l3=$(printf "Once upon a time there was a little dog who liked to run in the park with his friends. %.0s" 1 2 3)
l2=$(printf "The cat sat on the mat and looked at the bird in the tree all day long. %.0s" 1 2 3)
test_expect_success 'the context full: the oldest exchange dropped (said), the system message kept' '
	S="{\"role\":\"system\",\"content\":\"Stories.\"}" &&
	L2="{\"role\":\"user\",\"content\":\"$l2\"}" &&
	reply c "{\"messages\":[$S,{\"role\":\"user\",\"content\":\"$l3$l3$l3\"}]}" >r1 &&
	reply c "{\"messages\":[$S,$L2]}" >r2 &&
	cat r1 r2 >want &&
	printf "%s\n" "$l3$l3$l3" "$l2" | icl-gen -m c -n 12 --greedy --chat --system Stories. >got 2>err &&
	test_cmp want got &&
	grep -F "<stdin>:2: the conversation would pass the model'"'"'s context (max_position_embeddings 512)" err &&
	grep -F "dropped the 1 oldest exchange" err
'

test_expect_success 'a message longer than the context alone is refused; the history stays; status 1' '
	reply c "{\"messages\":[$U1]}" >r1 && r1=$(cat r1) &&
	a1="{\"role\":\"assistant\",\"content\":\"$(json "$r1")\"}" &&
	reply c "{\"messages\":[$U1,$a1,$U2]}" >r2 &&
	cat r1 r2 >want &&
	rc=0; printf "%s\n" "$u1" "$l3$l3$l3$l3$l3" "$u2" | icl-gen -m c -n 12 --greedy --chat >got 2>err || rc=$?
	test $rc -eq 1 && test_cmp want got &&
	grep -F "<stdin>:2: the message has" err &&
	grep -F "more than the model'"'"'s context (max_position_embeddings 512): not sent" err &&
	! grep -F "dropped" err
'

test_expect_success '--template-var, --chat-template and --dtype bf16 as the record mode' '
	printf "%s" "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}<assistant>{{ x }}" >t.jinja &&
	printf "%s\n" "{\"messages\":[$U1]}" >rec.jsonl &&
	icl-gen -q -m m --chat-template t.jinja --template-var "x= and" -n 12 --greedy --stream rec.jsonl | sed "\$d" >want &&
	printf "%s\n" "$u1" | icl-gen -m m --chat-template t.jinja --template-var "x= and" -n 12 --greedy --chat >got &&
	test_cmp want got &&
	icl-gen -q -m c --dtype bf16 -n 12 --greedy --stream rec.jsonl 2>/dev/null | sed "\$d" >r1 &&
	r1=$(cat r1) && a1="{\"role\":\"assistant\",\"content\":\"$(json "$r1")\"}" &&
	printf "%s\n" "{\"messages\":[$U1,$a1,$U2]}" >rec2.jsonl &&
	icl-gen -q -m c --dtype bf16 -n 12 --greedy --stream rec2.jsonl 2>/dev/null | sed "\$d" >r2 &&
	cat r1 r2 >want &&
	printf "%s\n" "$u1" "$u2" | icl-gen -q -m c --dtype bf16 -n 12 --greedy --chat >got 2>/dev/null &&
	test_cmp want got
'

test_expect_success 'sampling: --seed as the record mode (turn i draws from stream i)' '
	printf "%s\n" "$u1" | icl-gen -m c -n 12 --temperature 1 --seed 7 --chat >got &&
	reply_s() { printf "%s\n" "{\"messages\":[$U1]}" | icl-gen -q -m c -n 12 --temperature 1 --seed $1 --stream | sed "\$d"; } &&
	reply_s 7 >want && test_cmp want got &&
	printf "%s\n" "$u1" "/reset" "$u1" | icl-gen -m c -n 12 --temperature 1 --seed 7 --chat >got2 &&
	printf "%s\n" "{\"messages\":[$U1]}" "{\"messages\":[$U1]}" |
		icl-gen -q -m c -n 12 --temperature 1 --seed 7 --stream | sed "/^\$/d" >want2 &&
	sed "/^\$/d" got2 >got2b && test_cmp want2 got2b
'

test_expect_success 'a model without a chat template: an error naming --chat-template; usage errors' '
	if printf "hi\n" | icl-gen -m m --chat >out 2>err; then exit 1; fi &&
	test ! -s out &&
	grep -F -- "--chat needs a chat template" err && grep -F -- "--chat-template MODEL" err &&
	rc=0; icl-gen -m c --system hi </dev/null 2>err || rc=$?
	test $rc -eq 2 && grep -F -- "--system is the system message of --chat" err &&
	rc=0; icl-gen -m c --chat rec.jsonl </dev/null 2>err || rc=$?
	test $rc -eq 2 && grep -F "no FILE" err &&
	rc=0; icl-gen -m c --chat --ids </dev/null 2>err || rc=$?
	test $rc -eq 2 && grep -F "does not apply to --ids" err
'

GGUF="${ICL_SMOLLM2_GGUF:-}"
if [ -z "$GGUF" ] || [ ! -r "$GGUF" ]; then
	test_skip 'a chat with SmolLM2 (GGUF, its own template)' 'ICL_SMOLLM2_GGUF missing: make deps fetches it'
	test_skip 'a Q8_0 GGUF, three turns' 'ICL_SMOLLM2_GGUF missing: make deps fetches it'
	test_skip 'SmolLM2 with --adapter' 'ICL_SMOLLM2_GGUF missing: make deps fetches it'
else
test_expect_success 'a chat with SmolLM2 (GGUF, its own template): turn 2 as the record mode' '
	q1="What is the capital of France?" && q2="And of Germany?" &&
	printf "%s\n" "$q1" "$q2" | icl-gen -q -m "$GGUF" -n 24 --greedy --chat --system "Be brief." >got &&
	printf "%s\n" "{\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\"$q1\"}]}" |
		icl-gen -q -m "$GGUF" -n 24 --greedy --stream | sed "\$d" >r1 &&
	r1=$(cat r1) && test -n "$r1" &&
	printf "%s\n" "{\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\"$q1\"},{\"role\":\"assistant\",\"content\":\"$(json "$r1")\"},{\"role\":\"user\",\"content\":\"$q2\"}]}" |
		icl-gen -q -m "$GGUF" -n 24 --greedy --stream | sed "\$d" >r2 &&
	cat r1 r2 >want && test_cmp want got &&
	! grep -F "im_end" got
'

# On a quantized GGUF the decode steps run on int8 activations: the keys
# and values of a reply kept from them made turn 3 here differ from the
# record mode's (the elephant a herbivore, not a carnivore); the reply is
# now prefilled at the next turn, as the record mode prefills it.
test_expect_success 'a Q8_0 GGUF, three turns: each turn as the record mode (a reply re-prefilled)' '
	icl-convert "$GGUF" base && icl-convert --like "$GGUF" --type Q8_0 base q8.gguf &&
	q1="Name an animal." && q2="Where does it live?" && q3="What does it eat?" &&
	printf "%s\n" "$q1" "$q2" "$q3" | icl-gen -q -m q8.gguf -n 32 --greedy --chat >got &&
	test $(wc -l <got) = 3 &&
	r1=$(sed -n 1p got) && r2=$(sed -n 2p got) &&
	U="{\"role\":\"user\",\"content\":" && A="{\"role\":\"assistant\",\"content\":" &&
	printf "%s\n" "{\"messages\":[$U\"$q1\"}]}" \
		"{\"messages\":[$U\"$q1\"},$A\"$(json "$r1")\"},$U\"$q2\"}]}" \
		"{\"messages\":[$U\"$q1\"},$A\"$(json "$r1")\"},$U\"$q2\"},$A\"$(json "$r2")\"},$U\"$q3\"}]}" >recs.jsonl &&
	icl-gen -q -m q8.gguf -n 32 --greedy recs.jsonl >pred.jsonl &&
	python3 -c "import json,sys; [print(json.loads(l)[\"completion\"]) for l in open(sys.argv[1])]" pred.jsonl >want &&
	test_cmp want got
'

# the PEFT-initialised adapter (B zero: the same replies), applied unmerged
# on the quantized blocks: the option goes through
test_expect_success 'SmolLM2 with --adapter: the record mode'"'"'s reply' '
	q1="What is the capital of France?" &&
	printf "%s\n" "$q1" | icl-gen -q -m "$GGUF" --adapter "$DATA/smollm2/lora/init" -n 24 --greedy --chat >got &&
	printf "%s\n" "{\"messages\":[{\"role\":\"user\",\"content\":\"$q1\"}]}" |
		icl-gen -q -m "$GGUF" --adapter "$DATA/smollm2/lora/init" -n 24 --greedy --stream | sed "\$d" >want &&
	test -s want && test_cmp want got
'
fi

test_done
