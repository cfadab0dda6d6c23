#!/usr/bin/env python3
"""Expected output of icl-fmt on real data, made by independent parsers.

Run from the repository root:  python3 tests/data/fmt/make_expected.py
It reads the gzipped fixtures beside it and writes, for each case, the
sha256 of the whole expected output (CASE.sha256) and every 50th expected
record (CASE.sample.jsonl), which tests/t0101-fmt-real.sh compares with.

awesome:  Python's csv module reads awesome_chatgpt_prompts.csv; the
          record is {"prompt": act, "response": prompt, <the other columns>},
          which is what `icl-fmt --map instruction=act,output=prompt -t
          raw.tpl` must write (raw.tpl = "{instruction}\\n%%\\n{output}\\n").
alpaca:   json.load of alpaca_en_demo.json and Stanford Alpaca's PROMPT_DICT
          (tatsu-lab/stanford_alpaca, train.py) applied with str.format_map,
          exactly as their SupervisedDataset does (prompt_input when
          example.get("input", "") != "", else prompt_no_input).
JSON text is written with jansson's escaping (see lib/jsonout.h).
"""
import csv, gzip, hashlib, io, json, os

HERE = os.path.dirname(os.path.abspath(__file__))

PROMPT_DICT = {
    "prompt_input": (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
    ),
    "prompt_no_input": (
        "Below is an instruction that describes a task. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\n{instruction}\n\n### Response:"
    ),
}

ESC = {'"': '\\"', '\\': '\\\\', '\b': '\\b', '\f': '\\f', '\n': '\\n', '\r': '\\r', '\t': '\\t'}


def jstr(s):
    out = ['"']
    for ch in s:
        if ch in ESC:
            out.append(ESC[ch])
        elif ord(ch) < 0x20:
            out.append('\\u%04X' % ord(ch))
        else:
            out.append(ch)
    out.append('"')
    return ''.join(out)


def jobj(pairs):
    return '{' + ','.join(jstr(k) + ':' + jstr(v) for k, v in pairs) + '}\n'


def write(case, lines):
    data = ''.join(lines).encode('utf-8')
    with open(os.path.join(HERE, case + '.sha256'), 'w') as f:
        f.write(hashlib.sha256(data).hexdigest() + '\n')
    with open(os.path.join(HERE, case + '.sample.jsonl'), 'w', encoding='utf-8', newline='') as f:
        f.writelines(lines[::50])
    print(case, len(lines), 'records')


def awesome():
    csv.field_size_limit(1 << 30)
    raw = gzip.open(os.path.join(HERE, 'awesome_chatgpt_prompts.csv.gz')).read().decode('utf-8')
    rows = csv.reader(io.StringIO(raw, newline=''))
    header = next(rows)
    lines = []
    for row in rows:
        rec = dict(zip(header, row))
        pairs = [('prompt', rec['act']), ('response', rec['prompt'])]
        pairs += [(k, rec[k]) for k in header if k not in ('act', 'prompt')]
        lines.append(jobj(pairs))
    write('awesome', lines)


def alpaca():
    data = json.load(gzip.open(os.path.join(HERE, 'alpaca_en_demo.json.gz')))
    lines = []
    for ex in data:
        tpl = PROMPT_DICT['prompt_input'] if ex.get('input', '') != '' else PROMPT_DICT['prompt_no_input']
        pairs = [('prompt', tpl.format_map(ex)), ('response', ex['output'])]
        pairs += [(k, v) for k, v in ex.items() if k not in ('instruction', 'input', 'output')]
        lines.append(jobj(pairs))
    write('alpaca', lines)


awesome()
alpaca()
