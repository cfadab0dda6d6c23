#!/bin/sh
# icl-gen and chat templates: "messages" records rendered by the model
# folder's template (or --chat-template) with add_generation_prompt, the
# same completion as the rendered text given as a prompt; errors.
# stories260K with the byte-level tokenizer bytelevel-512 (as t0611; it adds
# no BOS, so the two prompts tokenize alike).
. "$(dirname "$0")/lib.sh"
mkdir m && cp "$DATA"/model/stories260K/model/* m/ && cp "$DATA/tok/bytelevel-512.json" m/tokenizer.json
mkdir c && cp m/* c/ &&
printf '%s' '{% for m in messages %}[{{ m.role }}] {{ m.content }}
{% endfor %}{% if add_generation_prompt %}[assistant]{{ x | default("") }}{% endif %}' >c/chat_template.jinja

test_expect_success 'a messages record renders with the folder template and add_generation_prompt' '
	echo "{\"id\":1,\"messages\":[{\"role\":\"user\",\"content\":\"Once upon a time\"}]}" >msg.jsonl &&
	icl-gen -m c -n 12 --greedy msg.jsonl >a.out &&
	printf "%s\n" "{\"id\":1,\"prompt\":\"[user] Once upon a time\n[assistant]\"}" >p.jsonl &&
	icl-gen -m c -n 12 --greedy p.jsonl >b.out &&
	sed "s/.*\"completion\"://" a.out >ca && sed "s/.*\"completion\"://" b.out >cb &&
	test -s ca && test_cmp ca cb &&
	grep -F "\"messages\":[{\"role\":\"user\",\"content\":\"Once upon a time\"}],\"completion\":" a.out
'

test_expect_success 'ShareGPT records ("conversations" of from/value turns) render as messages records do' '
	echo "{\"id\":1,\"conversations\":[{\"from\":\"human\",\"value\":\"Once upon a time\"}]}" >sg.jsonl &&
	icl-gen -m c -n 12 --greedy sg.jsonl >s.out &&
	sed "s/.*\"completion\"://" s.out >cs && test_cmp ca cs
'

test_expect_success '--chat-template and --template-var change the rendering' '
	icl-gen -m m --chat-template c/chat_template.jinja --template-var "x= Once" -n 12 --greedy msg.jsonl >d.out &&
	printf "%s\n" "{\"id\":1,\"prompt\":\"[user] Once upon a time\n[assistant] Once\"}" >q.jsonl &&
	icl-gen -m m -n 12 --greedy q.jsonl >e.out &&
	sed "s/.*\"completion\"://" d.out >cd && sed "s/.*\"completion\"://" e.out >ce && test_cmp cd ce
'

test_expect_success 'messages without a template, and template errors, are clear' '
	if icl-gen -m m -n 4 msg.jsonl 2>err; then exit 1; fi &&
	grep -F "msg.jsonl:1: a \"messages\" record needs a chat template" err &&
	if icl-gen -m m --chat-template nowhere.jinja -n 4 msg.jsonl 2>err; then exit 1; fi &&
	grep -F "nowhere.jinja" err &&
	printf "{{ raise_exception(\"no \" ~ messages[0].role) }}" >bad.jinja &&
	if icl-gen -m m --chat-template bad.jinja -n 4 msg.jsonl 2>err; then exit 1; fi &&
	grep -F "msg.jsonl:1: bad.jinja:1: no user" err &&
	if icl-gen -m m --ids --chat-template c 2>err </dev/null; then exit 1; fi &&
	grep -F "do not apply to --ids" err
'

test_expect_success 'a model whose own template does not parse: a warning, and the reason with the refusal' '
	mkdir b && cp m/* b/ && printf "{%% for m in messages %%}{{ m.content }}{%% endfxr %%}" >b/chat_template.jinja &&
	if icl-gen -m b -n 4 msg.jsonl 2>err; then exit 1; fi &&
	grep -F "the model'"'"'s chat template cannot be used" err &&
	grep -F "msg.jsonl:1: a \"messages\" record needs a chat template (b/chat_template.jinja:1:" err &&
	grep -F "unexpected '"'"'endfxr'"'"'" err &&
	if icl-gen -m m -n 4 msg.jsonl 2>err; then exit 1; fi &&
	! grep -F "cannot be used" err
'

# Records rendered by icl-fmt --chat-template ("chat": true, the turns'
# markers written as text) are tokenized with special tokens parsed, as
# icl-tok encodes them for training: the same completion as the messages.
GGUF="${ICL_SMOLLM2_GGUF:-}"
if [ -z "$GGUF" ] || [ ! -r "$GGUF" ]; then
	test_skip 'chat records of icl-fmt on SmolLM2' 'ICL_SMOLLM2_GGUF missing: make deps fetches it'
else
test_expect_success 'a chat record of icl-fmt --chat-template (earlier turns too) is generated as its messages' '
	u1="Title: Great\\nReview: I loved it.\\nIs the review positive or negative?" &&
	u2="Title: Awful\\nReview: It broke at once.\\nIs the review positive or negative?" &&
	printf "%s\n" "{\"messages\":[{\"role\":\"user\",\"content\":\"$u1\"},{\"role\":\"assistant\",\"content\":\"Positive\"},{\"role\":\"user\",\"content\":\"$u2\"}]}" >m.jsonl &&
	printf "%s\n" "{\"messages\":[{\"role\":\"user\",\"content\":\"$u1\"},{\"role\":\"assistant\",\"content\":\"Positive\"},{\"role\":\"user\",\"content\":\"$u2\"},{\"role\":\"assistant\",\"content\":\"Negative\"}]}" >c.jsonl &&
	icl-fmt -q --chat-template "$GGUF" c.jsonl >chat.jsonl &&
	grep -F "\"chat\":true" chat.jsonl &&
	icl-gen -m "$GGUF" -n 4 --greedy --threads 1 m.jsonl >a.out &&
	icl-gen -m "$GGUF" -n 4 --greedy --threads 1 chat.jsonl >b.out &&
	sed "s/.*\"completion\"://" a.out >ca && sed "s/.*\"completion\"://" b.out >cb &&
	test_cmp ca cb &&
	if grep -F "im_end" cb; then exit 1; fi
'

test_expect_success 'special-token text in a plain prompt: warned once, as icl-tok encode does' '
	p="<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n" &&
	printf "%s\n" "{\"prompt\":\"$p\"}" "{\"prompt\":\"$p\"}" >sp.jsonl &&
	icl-gen -m "$GGUF" -n 2 --greedy --threads 1 sp.jsonl >sp.out 2>err &&
	test "$(wc -l <sp.out)" = 2 &&
	test "$(grep -c "special-token text such as" err)" = 1 &&
	grep -F "sp.jsonl:1: the prompt contains special-token text such as \"<|im_" err &&
	grep -F "use --parse-special" err &&
	icl-gen -m "$GGUF" -n 2 --greedy --threads 1 --parse-special sp.jsonl >sp2.out 2>err &&
	! grep -F "special-token text" err &&
	icl-gen -m "$GGUF" -n 2 --greedy --threads 1 chat.jsonl >/dev/null 2>err &&
	! grep -F "special-token text" err
'
fi

test_done
