#!/usr/bin/env python3
"""Reference values for icl-fmt --shots (tests/t0109-fmt-shots.sh).

Run: /work/ref/venv/bin/python tests/data/shots/make_shots.py
(transformers 4.46.3, sacrebleu, rank_bm25 0.2.2 from PyPI.)  Writes:

similar.jsonl, similar-zh.jsonl: for each query (queries.jsonl,
  queries-zh.jsonl), the "shots" icl-fmt --shot-selection similar must
  give: the pool ids sorted by rank_bm25's BM25Okapi score (k1 1.5, b 0.75,
  epsilon 0.25) over instruction + " " + input, lower-cased and tokenized
  by sacreBLEU's 13a (English) or zh (Chinese) tokenizer, best first, ties
  in pool order, pool records with the query's key left out; with the
  scores, for the record.
chat-fixed3.jsonl: the records icl-fmt --chat-template smollm2.jinja
  --shots 3 --shot-selection fixed gives for queries.jsonl from pool.jsonl:
  the conversation (the first 3 pool records other than the query's
  duplicate as user/assistant turns, then the query) rendered by
  transformers' apply_chat_template with SmolLM2-135M-Instruct's template;
  the context is apply_chat_template(conv[:-1], add_generation_prompt=True),
  the target the rest of the full rendering through the <|im_end|> closing
  the query's answer.
"""
import json, os
from rank_bm25 import BM25Okapi
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
from sacrebleu.tokenizers.tokenizer_zh import TokenizerZh
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from transformers import PreTrainedTokenizerFast

HERE = os.path.dirname(os.path.abspath(__file__))
K_SIMILAR = 4


def load(name):
    with open(os.path.join(HERE, name), encoding='utf-8') as f:
        return [json.loads(l) for l in f]


def key(r):  # icl_shots_key: lower-cased, white space runs one space, trimmed
    return (' '.join(r['instruction'].lower().split()), ' '.join(r.get('input', '').lower().split()))


def text(r):
    return r['instruction'] + (' ' + r['input'] if r.get('input') else '')


def pool_id(r, i):
    return r.get('id', i)


def similar(pool_name, query_name, out_name, tok, k):
    pool, queries = load(pool_name), load(query_name)
    toks = lambda r: tok(text(r).lower().rstrip()).split()
    bm = BM25Okapi([toks(r) for r in pool])
    with open(os.path.join(HERE, out_name), 'w', encoding='utf-8') as f:
        for q in queries:
            sc = bm.get_scores(toks(q))
            order = sorted(range(len(pool)), key=lambda i: (-sc[i], i))
            order = [i for i in order if key(pool[i]) != key(q)][:k]
            f.write(json.dumps({'shots': [pool_id(pool[i], i) for i in order],
                                'scores': [float(sc[i]) for i in order]}, ensure_ascii=False) + '\n')


def chat_fixed(k):
    pool, queries = load('pool.jsonl'), load('queries.jsonl')
    with open(os.path.join(HERE, '..', 'chat', 'templates', 'smollm2.jinja')) as f:
        tpl = f.read()
    t = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel({'<unk>': 0}, unk_token='<unk>')),
                                bos_token='<|im_start|>', eos_token='<|im_end|>', chat_template=tpl)
    user = lambda r: r['instruction'] + ('\n\n' + r['input'] if r.get('input') else '')
    with open(os.path.join(HERE, 'chat-fixed%d.jsonl' % k), 'w', encoding='utf-8') as f:
        for q in queries:
            shots = [i for i in range(len(pool)) if key(pool[i]) != key(q)][:k]
            conv = []
            for i in shots:
                conv += [{'role': 'user', 'content': user(pool[i])},
                         {'role': 'assistant', 'content': pool[i]['output']}]
            conv += [{'role': 'user', 'content': user(q)}, {'role': 'assistant', 'content': q['output']}]
            ctx = t.apply_chat_template(conv[:-1], tokenize=False, add_generation_prompt=True)
            full = t.apply_chat_template(conv, tokenize=False)
            assert full.startswith(ctx)
            end = full.index('<|im_end|>', len(ctx)) + len('<|im_end|>')
            rec = {'prompt': [ctx], 'response': [full[len(ctx):end]], 'chat': True, 'shots': shots}
            f.write(json.dumps(rec, ensure_ascii=False, separators=(',', ':')) + '\n')


similar('pool.jsonl', 'queries.jsonl', 'similar.jsonl', Tokenizer13a(), K_SIMILAR)
similar('pool-zh.jsonl', 'queries-zh.jsonl', 'similar-zh.jsonl', TokenizerZh(), 3)
chat_fixed(3)
