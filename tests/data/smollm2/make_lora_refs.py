#!/usr/bin/env python3
"""LoRA reference for SmolLM2-135M-Instruct (GGUF, as make_refs.py loads it)
with transformers 4.46.3 + PEFT 0.13.2, and the check that an icl-written
adapter loads in PEFT.

  make: PEFT LoRA r 2, lora_alpha 16, target_modules q_proj v_proj,
        dropout 0, PEFT's init (torch.manual_seed(0): A Kaiming-uniform,
        B 0), written with save_pretrained to lora/init/ (the adapter icl-train
        starts from with --adapter).  Then 10 optimizer steps, batch 1, the
        first 10 lines of alpaca16.tok in order (no shuffling): loss = mean
        -log p over the response tokens (float32 cross-entropy), AdamW
        (torch.optim.AdamW: lr 1e-3, betas 0.9/0.999, eps 1e-8, no weight
        decay), global gradient clipping at 1.0, constant learning rate.
        Written: lora/curve.txt, one line per step: "LOSS GRAD_NORM"
        (grad norm before clipping), then lora/final_norms.txt: "NAME FROB"
        of every adapter tensor after the 10 steps (its Frobenius norm).
  check DIR: load the adapter folder DIR (icl-train's output) with
        PeftModel.from_pretrained on the same base and print the masked loss
        over the 16 examples of alpaca16.tok as "LOSS N" (as icl-eval -m
        GGUF --adapter DIR reports it).

Run: /work/ref/venv/bin/python tests/data/smollm2/make_lora_refs.py GGUF make
     /work/ref/venv/bin/python tests/data/smollm2/make_lora_refs.py GGUF check DIR
"""
import math
import os
import sys

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "lora")


def base(gguf_path):
    d, f = os.path.dirname(os.path.abspath(gguf_path)), os.path.basename(gguf_path)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, torch_dtype=torch.float32)
    model.config.tie_word_embeddings = True
    model.lm_head.weight = model.model.embed_tokens.weight
    return model


def examples():
    out = []
    for line in open(os.path.join(HERE, "alpaca16.tok")):
        p, r = line.rstrip("\n").split("\t")
        p, r = [int(x) for x in p.split()], [int(x) for x in r.split()]
        out.append((p, r))
    return out


def loss_of(model, p, r):
    ids = torch.tensor([p + r])
    labels = torch.tensor([[-100] * len(p) + r])
    logits = model(ids).logits[0, :-1].float()
    return torch.nn.functional.cross_entropy(logits, labels[0, 1:], reduction="sum"), len(r)


def make(gguf_path):
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = base(gguf_path)
    cfg = LoraConfig(r=2, lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0.0,
                     task_type="CAUSAL_LM")
    model = get_peft_model(model, cfg)
    os.makedirs(OUT, exist_ok=True)
    model.save_pretrained(os.path.join(OUT, "init"))
    os.remove(os.path.join(OUT, "init", "README.md"))  # PEFT's model card: not needed
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    lines = []
    for step, (p, r) in enumerate(examples()[:10]):
        opt.zero_grad()
        s, n = loss_of(model, p, r)
        loss = s / n
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        lines.append("%.9g %.9g" % (loss.item(), gn.item()))
        print(step + 1, lines[-1], flush=True)
    open(os.path.join(OUT, "curve.txt"), "w").write("\n".join(lines) + "\n")
    with open(os.path.join(OUT, "final_norms.txt"), "w") as f:
        for name, p in model.named_parameters():
            if p.requires_grad:
                name = name.replace(".default", "")
                f.write("%s %.9g\n" % (name, p.detach().double().norm().item()))


def check(gguf_path, d):
    torch.set_num_threads(2)
    model = PeftModel.from_pretrained(base(gguf_path), d).eval()
    tot, n = 0.0, 0
    with torch.no_grad():
        for p, r in examples():
            ids = torch.tensor([p + r])
            lp = torch.log_softmax(model(ids).logits[0].double(), dim=-1)
            for t in range(len(p), len(p) + len(r)):
                tot -= lp[t - 1, (p + r)[t]].item()
                n += 1
    print("%.9g %d" % (tot / n, n))


if __name__ == "__main__":
    if sys.argv[2] == "make":
        make(sys.argv[1])
    else:
        check(sys.argv[1], sys.argv[3])
