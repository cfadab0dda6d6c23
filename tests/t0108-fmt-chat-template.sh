#!/bin/sh
# icl-fmt --chat-template: records rendered by the model's own template,
# split into context/target segments; icl-tok encode turns them into the
# token lines transformers' return_assistant_tokens_mask gives (Qwen3).
. "$(dirname "$0")/lib.sh"

test_expect_success 'setup: a Qwen3 model folder and a SmolLM2 one' '
	mkdir qwen smol &&
	gzip -dc "$DATA/tok/qwen3.json.gz" >qwen/tokenizer.json &&
	cp "$DATA/tok/qwen3_tokenizer_config.json" qwen/tokenizer_config.json &&
	cp "$DATA/chat/templates/qwen3.jinja" qwen/chat_template.jinja &&
	cp "$DATA/chat/templates/smollm2.jinja" smol/chat_template.jinja &&
	printf "{\"model_max_length\": 1000000000000000019884624838656, \"bos_token\": \"<|im_start|>\", \"eos_token\": \"<|im_end|>\"}" >smol/tokenizer_config.json
'

test_expect_success 'token lines equal transformers assistant masks (Qwen3)' '
	icl-fmt --chat-template qwen "$DATA/chat/qwen3-chats.jsonl" >recs.jsonl &&
	test $(wc -l <recs.jsonl) = 5 &&
	grep -c "\"chat\":true" recs.jsonl | grep -qx 5 &&
	icl-tok encode -t qwen recs.jsonl | grep -v "^#" >got.txt &&
	cmp got.txt "$DATA/chat/qwen3-tokens.txt"
'

test_expect_success 'segments: context before each assistant turn, the turn through its end marker' '
	printf "%s\n" "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"},{\"role\":\"assistant\",\"content\":\"Hello!\"},{\"role\":\"user\",\"content\":\"2+2?\"},{\"role\":\"assistant\",\"content\":\"4\"}],\"id\":7}" >in.jsonl &&
	icl-fmt --chat-template smol in.jsonl >out.jsonl &&
	cat >want.jsonl <<-\EOT &&
	{"prompt":["<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n","\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n"],"response":["Hello!<|im_end|>","4<|im_end|>"],"chat":true,"id":7}
	EOT
	cmp out.jsonl want.jsonl
'

test_expect_success 'an empty assistant answer among others: its turn is context, the others targets' '
	printf "%s\n" "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"},{\"role\":\"assistant\",\"content\":\"\"},{\"role\":\"user\",\"content\":\"2+2?\"},{\"role\":\"assistant\",\"content\":\"4\"},{\"role\":\"user\",\"content\":\"3+3?\"},{\"role\":\"assistant\",\"content\":\" \"}]}" >e.jsonl &&
	icl-fmt --chat-template smol e.jsonl >out.jsonl 2>err &&
	cat >want.jsonl <<-\EOT &&
	{"prompt":["<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n"],"response":["4<|im_end|>"],"chat":true}
	EOT
	cmp out.jsonl want.jsonl &&
	test_grep "e.jsonl:1: empty assistant message 2 and others: not trained on (context of the next turn); the record.s other answers are" err &&
	test_grep "1 multi-turn record with an empty or whitespace-only answer among others kept" err
'

test_expect_success 'ShareGPT, instruction records, CSV messages column, system column' '
	printf "%s\n" "{\"conversations\":[{\"from\":\"system\",\"value\":\"S\"},{\"from\":\"human\",\"value\":\"Hi\"},{\"from\":\"gpt\",\"value\":\"Yo\"}]}" >sg.jsonl &&
	icl-fmt --chat-template smol --map messages=conversations sg.jsonl >sg.out &&
	grep -F "\"prompt\":[\"<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n\"],\"response\":[\"Yo<|im_end|>\"],\"chat\":true}" sg.out &&
	icl-fmt --chat-template smol sg.jsonl >sg2.out && cmp sg.out sg2.out &&
	printf "%s\n" "{\"conversations\":[{\"from\":\"human\",\"value\":\"Hi\"},{\"from\":\"robot\",\"value\":\"Yo\"}]}" >sgbad.jsonl &&
	if icl-fmt --chat-template smol sgbad.jsonl >sg3.out 2>sg3.err; then exit 1; fi &&
	grep -F "sgbad.jsonl:1: message 2: unknown ShareGPT speaker \"from\": \"robot\"" sg3.err &&
	printf "instruction,input,output,system\nAdd,2 and 3,5,Be exact.\n" >i.csv &&
	icl-fmt --chat-template smol i.csv >i.out &&
	grep -F "[\"<|im_start|>system\nBe exact.<|im_end|>\n<|im_start|>user\nAdd\n\n2 and 3<|im_end|>\n<|im_start|>assistant\n\"],\"response\":[\"5<|im_end|>\"]" i.out &&
	printf "%s\n" "id,messages" "1,\"[{\"\"role\"\": \"\"user\"\", \"\"content\"\": \"\"Q\"\"}, {\"\"role\"\": \"\"assistant\"\", \"\"content\"\": \"\"A\"\"}]\"" >m.csv &&
	icl-fmt --chat-template smol m.csv >m.out &&
	grep -F "\"response\":[\"A<|im_end|>\"],\"chat\":true,\"id\":\"1\"}" m.out
'

test_expect_success '--template-var: JSON when it parses, else a string' '
	printf "{{ messages[0].content }}|{{ d }}|{{ flag }}|{{ n + 1 }}{%% for m in messages %%}{%% if m.role == \"assistant\" %%}{{ m.content }}</s>{%% endif %%}{%% endfor %%}" >t.jinja &&
	printf "%s\n" "{\"instruction\":\"Q\",\"output\":\"A\"}" >q.jsonl &&
	icl-fmt --chat-template t.jinja --template-var "d=26 Jul 2024" --template-var flag=false --template-var n=41 q.jsonl >v.out &&
	grep -F "\"prompt\":[\"Q|26 Jul 2024|False|42\"],\"response\":[\"A</s>\"]" v.out
'

test_expect_success 'the template raise_exception message names the record' '
	printf "%s\n" "{\"messages\":[{\"role\":\"system\",\"content\":\"S\"},{\"role\":\"user\",\"content\":\"Q\"},{\"role\":\"assistant\",\"content\":\"A\"}]}" >sys.jsonl &&
	mkdir gemma && cp "$DATA/chat/templates/gemma-2.jinja" gemma/chat_template.jinja &&
	if icl-fmt --chat-template gemma sys.jsonl >g.out 2>g.err; then exit 1; fi &&
	grep -F "sys.jsonl:1: " g.err && grep -F "System role not supported" g.err
'

test_expect_success 'a template that rewrites earlier turns is refused, not mis-masked' '
	mkdir mis && cp "$DATA/chat/templates/mistral-v0.3.jinja" mis/chat_template.jinja &&
	printf "{\"bos_token\": \"<s>\", \"eos_token\": \"</s>\"}" >mis/tokenizer_config.json &&
	printf "%s\n" "{\"messages\":[{\"role\":\"system\",\"content\":\"S\"},{\"role\":\"user\",\"content\":\"Q1\"},{\"role\":\"assistant\",\"content\":\"A1\"},{\"role\":\"user\",\"content\":\"Q2\"},{\"role\":\"assistant\",\"content\":\"A2\"}]}" >m2.jsonl &&
	if icl-fmt --chat-template mis m2.jsonl >m2.out 2>m2.err; then exit 1; fi &&
	grep -F "m2.jsonl:1: cannot locate assistant reply 1 (message 3 of the conversation)" m2.err &&
	icl-fmt --chat-template mis --on-error skip m2.jsonl >m2.out 2>m2.err &&
	test ! -s m2.out
'

test_expect_success 'a conversation that opens with an assistant message is refused as such, not as a rewriting template' '
	printf "%s\n" "{\"conversations\":[{\"from\":\"gpt\",\"value\":\"Hi, how can I help?\"},{\"from\":\"human\",\"value\":\"Q\"},{\"from\":\"gpt\",\"value\":\"A\"}]}" >greet.jsonl &&
	if icl-fmt --chat-template smol greet.jsonl >gr.out 2>gr.err; then exit 1; fi &&
	grep -F "greet.jsonl:1: cannot locate assistant reply 1 (message 1 of the conversation): it comes before any user message" gr.err &&
	grep -F "start the conversation with a user message" gr.err &&
	! grep -F "rewrites earlier turns" gr.err
'

test_expect_success 'a template that drops assistant turns gets no borrowed marker' '
	printf "{%% for m in messages %%}{%% if m.role == \"user\" %%}<u>{{ m.content }}</s>{%% endif %%}{%% endfor %%}" >drop.jinja &&
	if icl-fmt --chat-template drop.jinja in.jsonl >d.out 2>d.err; then exit 1; fi &&
	grep -F "in.jsonl:1: cannot find the end of assistant reply 1 (message 2 of the conversation)" d.err
'

test_expect_success 'a file that is not a chat template is refused by name' '
	printf "instruction,output\nq,a\n" >data.csv &&
	if icl-fmt --chat-template data.csv in.jsonl >o 2>e; then exit 1; fi &&
	test_grep "^icl-fmt: data.csv: not a chat template (no Jinja {{ }} or {% %} in it): give a model folder, a GGUF file, a tokenizer_config.json or a .jinja file$" e &&
	printf "Answer {{ question }} briefly.\n" >prompt.jinja &&
	if icl-fmt --chat-template prompt.jinja in.jsonl >o 2>e; then exit 1; fi &&
	test_grep "^icl-fmt: prompt.jinja: not a chat template: it renders none of the messages. text$" e &&
	test ! -s o &&
	printf "{%% for m in messages %%}{{ m.content }}</s>{%% endfor %%}" >plain.tmpl &&
	icl-fmt --chat-template plain.tmpl in.jsonl >o && test_grep "Hello!</s>" o
'

test_expect_success 'usage errors' '
	if icl-fmt --chat-template smol -T chatml in.jsonl 2>e; then exit 1; fi &&
	grep -F "exclude each other" e &&
	if icl-fmt --template-var a=1 in.jsonl 2>e; then exit 1; fi &&
	grep -F "needs --chat-template" e &&
	if icl-fmt --chat-template smol --template-var noequal in.jsonl 2>e; then exit 1; fi &&
	grep -F "NAME=VALUE" e &&
	if icl-fmt --chat-template nowhere in.jsonl 2>e; then exit 1; fi &&
	grep -F "nowhere" e
'

test_expect_success 'prompt/response rows are refused, naming the --map that renders them; rendered records pass' '
	printf "prompt,response\nHi?,Hello.\n" >pr.csv &&
	test_must_fail icl-fmt --chat-template smol pr.csv >o 2>e && test ! -s o &&
	echo "icl-fmt: pr.csv:2: --chat-template renders messages or instruction/output records; prompt/response would pass through without the template: to render the prompt as the user message and the response as the answer, --map instruction=prompt,output=response" >want &&
	test_cmp want e &&
	icl-fmt --chat-template smol --map instruction=prompt,output=response pr.csv >o &&
	test_grep "\"prompt\":\[\"<|im_start|>system.*<|im_start|>user\\\\nHi?<|im_end|>\\\\n<|im_start|>assistant\\\\n\"\],\"response\":\[\"Hello.<|im_end|>\"\],\"chat\":true}" o &&
	printf "{\"q\":\"Hi?\",\"a\":\"Hello.\"}\n" >pr.jsonl &&
	test_must_fail icl-fmt --chat-template smol --map prompt=q,response=a pr.jsonl >o 2>e &&
	test_grep "pr.jsonl:1: .*--map instruction=q,output=a$" e &&
	icl-fmt --chat-template smol --on-error=skip --map prompt=q,response=a pr.jsonl >o 2>e && test ! -s o &&
	test_grep "1 bad record skipped" e &&
	icl-fmt --chat-template smol --map instruction=prompt,output=response pr.csv >r1 &&
	icl-fmt --chat-template smol r1 >r2 && test_cmp r1 r2
'

test_expect_success 'a folder without a template: an adapter folder names its base' '
	printf "instruction,output\nHi?,Hello.\n" >io.csv &&
	mkdir ad empty && echo "{\"base_model_name_or_path\": \"/models/smol\", \"r\": 4}" >ad/adapter_config.json &&
	test_must_fail icl-fmt --chat-template ad io.csv >o 2>e && test ! -s o &&
	echo "icl-fmt: ad: no tokenizer_config.json or chat_template.jinja: a LoRA adapter folder, whose chat template is its base model'"'"'s: give the base (/models/smol)" >want &&
	test_cmp want e &&
	test_must_fail icl-fmt --chat-template empty io.csv >o 2>e &&
	echo "icl-fmt: empty: no chat template here (no tokenizer_config.json or chat_template.jinja; a model trained with --arch has none)" >want &&
	test_cmp want e
'

test_done
