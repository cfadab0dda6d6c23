#!/usr/bin/env python3
"""check_icl_prompts.py MODEL.gguf OUT_DIR - the k-shot prompts of `make -C
examples icl` against transformers' apply_chat_template.

For every record of OUT_DIR/icl/TASK.{random,similar}{1,4,8}.chat.jsonl
(icl-fmt --chat-template MODEL --shots K), rebuild the conversation from
its "shots" (0-based indices into OUT_DIR/TASK.train.rows.jsonl) and the
held-out row (OUT_DIR/TASK.test.rows.jsonl, same order), render it with the
chat template stored in the GGUF (tokenizer.chat_template) through
transformers' apply_chat_template, and compare: the prompt must be the
rendering with add_generation_prompt, the response the rest through the
<|im_end|> that closes the answer.  Prints the counts; exits 1 on any
difference.  Not run by make check (it needs the reference venv:
/work/ref/venv/bin/python, transformers 4.46.3, gguf); tests/t0109 checks
the same rendering on fixtures.
"""
import json, sys, gguf
from transformers import PreTrainedTokenizerFast
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
r = gguf.GGUFReader(sys.argv[1]); f = r.fields['tokenizer.chat_template']
tpl = bytes(f.parts[f.data[0]]).decode()
t = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel({'<unk>': 0}, unk_token='<unk>')),
                            bos_token='<|im_start|>', eos_token='<|im_end|>', chat_template=tpl)
out = sys.argv[2]
ok = bad = 0
for task in ('amazon', 'agnews'):
    train = [json.loads(x) for x in open('%s/%s.train.rows.jsonl' % (out, task), encoding='utf-8')]
    test = [json.loads(x) for x in open('%s/%s.test.rows.jsonl' % (out, task), encoding='utf-8')]
    for run in ('random1', 'random4', 'random8', 'similar1', 'similar4', 'similar8'):
        path = '%s/icl/%s.%s.chat.jsonl' % (out, task, run)
        with open(path, encoding='utf-8') as fh:
            recs = [json.loads(x) for x in fh if x.strip()]
        for q, rec in zip(test, recs):
            conv = []
            for i in rec['shots']:
                conv += [{'role': 'user', 'content': train[i]['prompt']},
                         {'role': 'assistant', 'content': train[i]['response']}]
            conv += [{'role': 'user', 'content': q['prompt']}, {'role': 'assistant', 'content': q['response']}]
            ctx = t.apply_chat_template(conv[:-1], tokenize=False, add_generation_prompt=True)
            full = t.apply_chat_template(conv, tokenize=False)
            end = full.index('<|im_end|>', len(ctx)) + len('<|im_end|>')
            if rec.get('chat') and rec['prompt'] == [ctx] and rec['response'] == [full[len(ctx):end]]:
                ok += 1
            else:
                bad += 1
                print('%s: %s differs from apply_chat_template' % (path, rec.get('shots')))
print('records equal to apply_chat_template: %d, different: %d' % (ok, bad))
sys.exit(1 if bad or not ok else 0)
