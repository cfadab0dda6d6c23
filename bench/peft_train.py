#!/usr/bin/env python3
"""bench/peft_train.py - the PyTorch peers of icl-train on a real model for
bench/train.sh: transformers (+ PEFT) training steps of a Hugging Face folder
on the same packed rows icl-train reads, measured the same way.

  --model DIR     HF folder (bench/train.sh writes it with icl-convert from
                  the SmolLM2 GGUF, so both sides start from the same floats)
  --data FILE     token lines "\tID ID ..." (every id a target, as icl-train
                  reads a line that starts with a tab); rows of equal length
  --lora-r R      0: full fine-tune (every weight, the tied embedding/LM head
                  included, as icl-train's full fine-tune); else PEFT LoRA r R,
                  lora_alpha 2R, dropout 0, target_modules all-linear (every
                  projection of the blocks; the tied LM head stays frozen, as
                  icl does)
  --bf16          the forward under torch.autocast("cpu", dtype=bfloat16):
                  PyTorch's mixed precision on a CPU (the matrix products in
                  bfloat16, master weights, gradients and AdamW state float32;
                  the loss from the logits cast to float32).  The backward
                  runs outside the context, as PyTorch's AMP recipe says.
  --checkpointing transformers' gradient checkpointing
  --batch B --steps N --threads T

One optimizer step per batch of B rows: mean cross-entropy over all next-token
targets, backward, clip_grad_norm_ 1.0, AdamW (lr 1e-4, betas 0.9/0.999,
weight decay 0).  Prints one JSON line per step with icl-train's keys
({"step": S, "loss": L, "tokens_per_s": R}; loss is the step's loss before its
update, R = B * (row length) / step seconds) so that bench/train.sh reads both
programs alike, then on stderr a summary: "torch VERSION (FILE) tokens_per_s
MEDIAN threads T loss LAST" (median over the steps after two warm-up steps).
Needs bench-deps (transformers 4.46.3, peft 0.13.2 in bench/out/venv; on
Debian's torch 1.13 with PYTHONPATH=bench/out/torch-deb:/usr/lib/python3/
dist-packages, see the Makefile).
"""
import argparse
import contextlib
import json
import statistics
import sys
import time

import torch

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--data", required=True)
ap.add_argument("--lora-r", type=int, default=0)
ap.add_argument("--bf16", action="store_true")
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


def autocast():
    if a.bf16:
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


rows = [[int(x) for x in line.split()] for line in open(a.data) if line.strip()]
rates, loss = [], None
for step in range(a.steps):
    batch = [rows[(step * a.batch + i) % len(rows)] for i in range(a.batch)]
    ids = torch.tensor(batch)
    t0 = time.perf_counter()
    with autocast():
        logits = model(input_ids=ids, use_cache=False).logits
    logits = logits.float()
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    dt = time.perf_counter() - t0
    print(json.dumps({"step": step + 1, "loss": round(loss.item(), 6), "tokens_per_s": round(ids.numel() / dt, 2)}),
          flush=True)
    if step >= 2:
        rates.append(ids.numel() / dt)
print("torch %s (%s) tokens_per_s %.1f threads %d loss %.4f" % (
    torch.__version__, torch.__file__, statistics.median(rates) if rates else 0.0, a.threads, loss.item()),
    file=sys.stderr)
