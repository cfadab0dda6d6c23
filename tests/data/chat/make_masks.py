#!/usr/bin/env python3
"""Reference assistant spans for icl's chat masking (lib/chat.c).

For each template, a generation-annotated variant (templates-gen/) is made from the committed
text by the substitutions below (TRL's convention: {% generation %} wraps
what the model must produce after the generation prompt: the assistant
content and its end-of-turn marker).  The script checks that the variant
renders exactly the original text, then records the spans transformers
4.46.3 finds with return_assistant_tokens_mask's machinery
(_render_with_assistant_indices), as UTF-8 byte offsets, in masks.jsonl.
icl must find the same spans from the unannotated template.
Run: /work/ref/venv/bin/python tests/data/chat/make_masks.py
"""
import json, os
from transformers.utils.chat_template_utils import _compile_jinja_template, _render_with_assistant_indices
import make_chat

HERE = os.path.dirname(os.path.abspath(__file__))

def sub(text, old, new, count=1):
    assert text.count(old) >= count, (old, text.count(old))
    return text.replace(old, new, count)

def annotate(name, t):
    if name == 'smollm2':
        old = "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
        return sub(t, old, "{% if message['role'] == 'assistant' %}{{'<|im_start|>assistant\n'}}{% generation %}"
                   "{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{'\n'}}{% else %}" + old + "{% endif %}")
    if name == 'qwen2.5':
        old = "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
        return sub(t, old, "{%- if message.role == 'assistant' %}{{- '<|im_start|>assistant\\n' }}{%- generation %}"
                   "{{- message.content + '<|im_end|>' }}{%- endgeneration %}{{- '\\n' }}{%- else %}" + old + "{%- endif %}")
    if name in ('llama-3.1', 'llama-3.2', 'llama-3.3'):
        old = "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}"
        return sub(t, old, "{%- if message.role == 'assistant' %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
                   "{%- generation %}{{- message['content'] | trim + '<|eot_id|>' }}{%- endgeneration %}{%- else %}" + old + "{%- endif %}")
    if name == 'gemma-2':
        old = "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
        return sub(t, old, "{% if role == 'model' %}{{ '<start_of_turn>model\n' }}{% generation %}{{ message['content'] | trim + "
                   "'<end_of_turn>' }}{% endgeneration %}{{ '\n' }}{% else %}" + old + "{% endif %}")
    if name == 'phi-3.5':
        return sub(t, "{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}",
                   "{{'<|assistant|>\n'}}{% generation %}{{message['content'] + '<|end|>'}}{% endgeneration %}{{'\n'}}")
    if name in ('mistral-v0.3',):
        return sub(t, "{{- ' ' + message['content'] + eos_token}}",
                   "{%- generation %}{{- ' ' + message['content'] + eos_token}}{%- endgeneration %}")
    if name == 'mistral-nemo':
        return sub(t, '{{- message["content"] + eos_token}}',
                   '{%- generation %}{{- message["content"] + eos_token}}{%- endgeneration %}')
    if name == 'deepseek-r1-distill':
        return sub(t, "{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}",
                   "{{'<｜Assistant｜>'}}{% generation %}{{content + '<｜end▁of▁sentence｜>'}}{% endgeneration %}")
    if name == 'qwen3':
        a = t.index('{%- elif message.role == "assistant" %}')
        b = t.index('{%- elif message.role == "tool" %}')
        seg = t[a:b]
        seg = sub(seg, "'<|im_start|>' + message.role + '\\n<think>\\n'", "'<think>\\n'")
        seg = sub(seg, "{{- '<|im_start|>' + message.role + '\\n' + content }}", "{{- content }}", 2)
        seg = sub(seg, "        {%- if loop.index0 > ns.last_query_index %}",
                  "        {{- '<|im_start|>' + message.role + '\\n' }}{%- generation %}\n        {%- if loop.index0 > ns.last_query_index %}")
        seg = sub(seg, "        {{- '<|im_end|>\\n' }}\n", "        {{- '<|im_end|>' }}{%- endgeneration %}{{- '\\n' }}\n")
        return t[:a] + seg + t[b:]
    raise KeyError(name)

def main():
    out = open(os.path.join(HERE, 'masks.jsonl'), 'w', encoding='utf-8')
    for name, toks in make_chat.MODELS.items():
        orig = open(os.path.join(HERE, 'templates', name + '.jinja'), encoding='utf-8').read()
        ann = annotate(name, orig)
        os.makedirs(os.path.join(HERE, 'templates-gen'), exist_ok=True)
        open(os.path.join(HERE, 'templates-gen', name + '.jinja'), 'w', encoding='utf-8').write(ann)
        for cname in ('one-answer', 'multi', 'sys-multi', 'unicode', 'think', 'spaces'):
            conv = make_chat.CONVS.get(cname) or [make_chat.U('Hi'), make_chat.A('Hello!')]
            vars_ = dict(toks)
            if name.startswith('llama'):
                vars_['date_string'] = '26 Jul 2024'
            case = {'template': name, 'conv': cname, 'vars': vars_, 'messages': conv}
            try:
                want = _compile_jinja_template(orig).render(messages=conv, tools=None, documents=None,
                                                             add_generation_prompt=False, **vars_)
            except Exception as e:
                case['error'] = str(e)
                out.write(json.dumps(case, ensure_ascii=False) + '\n')
                continue
            text, idx = _render_with_assistant_indices(_compile_jinja_template(ann), conv, None, None,
                                                       add_generation_prompt=False, **vars_)
            assert text == want, (name, cname, text, want)
            case['text'] = text
            case['spans'] = [[len(text[:s].encode()), len(text[:e].encode())] for s, e in idx]
            out.write(json.dumps(case, ensure_ascii=False) + '\n')
    out.close()

if __name__ == '__main__':
    main()


def token_masks():
    """Token-level reference for Qwen3: transformers' apply_chat_template(
    tokenize=True, return_assistant_tokens_mask=True) with the annotated
    template and the Qwen3 tokenizer (tests/data/tok/qwen3.json.gz), written
    as the token line icl must produce: segments where the mask changes,
    context first, ending with the last assistant token (qwen3-tokens.txt,
    one line per conversation in qwen3-chats.jsonl)."""
    import gzip, tempfile
    from transformers import PreTrainedTokenizerFast
    with tempfile.TemporaryDirectory() as d:
        open(os.path.join(d, 'tokenizer.json'), 'wb').write(
            gzip.open(os.path.join(HERE, '..', 'tok', 'qwen3.json.gz')).read())
        tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(d, 'tokenizer.json'), eos_token='<|im_end|>')
    tok.chat_template = annotate('qwen3', open(os.path.join(HERE, 'templates', 'qwen3.jinja'), encoding='utf-8').read())
    chats = open(os.path.join(HERE, 'qwen3-chats.jsonl'), 'w', encoding='utf-8')
    lines = open(os.path.join(HERE, 'qwen3-tokens.txt'), 'w')
    for cname in ('multi', 'sys-multi', 'unicode', 'think', 'spaces'):
        conv = make_chat.CONVS[cname]
        r = tok.apply_chat_template(conv, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
        ids, mask = r['input_ids'], r['assistant_masks']
        last = max(i for i, m in enumerate(mask) if m)
        segs, cur, state = [], [], 0
        for i in range(last + 1):
            if mask[i] != state:
                segs.append(cur)
                cur, state = [], mask[i]
            cur.append(ids[i])
        segs.append(cur)
        lines.write('\t'.join(' '.join(map(str, s)) for s in segs) + '\n')
        chats.write(json.dumps({'messages': conv}, ensure_ascii=False) + '\n')


if __name__ == '__main__':
    token_masks()
