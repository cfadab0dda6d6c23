#!/usr/bin/env python3
"""bench/peft_train.py - the peer of icl-train on a real model for
bench/train.sh: transformers + PEFT training steps of a Hugging Face folder
(float32) on the same packed rows icl-train reads, measured the same way.

  --model DIR     HF folder (bench/train.sh writes it with icl-convert from
                  the SmolLM2 GGUF, so both sides start from the same floats)
  --data FILE     token lines "\tID ID ..." (every id a target, as icl-train
                  reads a line that starts with a tab); rows of equal length
  --lora-r R      0: full fine-tune; else PEFT LoRA r R, lora_alpha 2R,
                  dropout 0, target_modules all-linear (every projection of
                  the blocks; the tied LM head stays frozen, as icl does)
  --checkpointing transformers' gradient checkpointing
  --batch B --steps N --threads T

One optimizer step per batch of B rows: mean cross-entropy over all next-token
targets, backward, clip_grad_norm_ 1.0, AdamW (lr 1e-4, betas 0.9/0.999,
weight decay 0).  Prints "torch tokens_per_s X threads T loss L": the median
over the steps after two warm-up steps of B * (row length) / step seconds.
Needs bench-deps (transformers 4.46.3, peft 0.13.2 in bench/out/venv).
"""
import argparse
import statistics
import time

import torch

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--data", required=True)
ap.add_argument("--lora-r", type=int, default=0)
ap.add_argument("--checkpointing", action="store_true")
ap.add_argument("--batch", type=int, default=8)
ap.add_argument("--steps", type=int, default=8)
ap.add_argument("--threads", type=int, default=1)
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)

from transformers import AutoModelForCausalLM  # noqa: E402

model = AutoModelForCausalLM.from_pretrained(a.model, torch_dtype=torch.float32)
if a.checkpointing:
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
if a.lora_r:
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=a.lora_r, lora_alpha=2 * a.lora_r, lora_dropout=0.0, task_type="CAUSAL_LM",
                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    model = get_peft_model(model, cfg)
    if a.checkpointing:
        model.enable_input_require_grads()
model.train()
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)

rows = [[int(x) for x in line.split()] for line in open(a.data) if line.strip()]
rates, loss = [], None
for step in range(a.steps):
    batch = [rows[(step * a.batch + i) % len(rows)] for i in range(a.batch)]
    ids = torch.tensor(batch)
    t0 = time.perf_counter()
    logits = model(input_ids=ids).logits
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    dt = time.perf_counter() - t0
    if step >= 2:
        rates.append(ids.numel() / dt)
print("torch tokens_per_s %.1f threads %d loss %.4f" % (statistics.median(rates), a.threads, loss.item()))
