#!/usr/bin/env python3
"""Reference values for lib/sample.c from Hugging Face transformers' own
logits processors (transformers 4.46.3, torch 1.13, float32, CPU).

Run:  python3 -m venv --system-site-packages V && V/bin/pip install transformers==4.46.3
      V/bin/python tests/data/eval/make_samplers.py > tests/data/eval/hf_samplers.json
(with Debian's python3-torch; not needed by make or make check).

Each case: logits [V] float32 (as exact float32 values written with repr of
the float32), the ids seen so far, sampler parameters, and the processed
logits where -inf is written as null.  The processors are built and ordered
exactly as GenerationMixin._get_logits_processor does for do_sample=True
(or greedy: repetition penalty only, then argmax)."""
import json
import torch
import transformers
from transformers.generation.logits_process import (
    LogitsProcessorList, RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper,
    TopKLogitsWarper, TopPLogitsWarper, MinPLogitsWarper)


def pipeline(p):
    procs = []
    if p["repetition_penalty"] != 1.0:
        procs.append(RepetitionPenaltyLogitsProcessor(penalty=float(p["repetition_penalty"])))
    if p["temperature"] != 1.0:
        procs.append(TemperatureLogitsWarper(float(p["temperature"])))
    if p["top_k"] != 0:
        procs.append(TopKLogitsWarper(top_k=p["top_k"], min_tokens_to_keep=1))
    if p["top_p"] < 1.0:
        procs.append(TopPLogitsWarper(top_p=p["top_p"], min_tokens_to_keep=1))
    if p["min_p"] != 0.0:
        procs.append(MinPLogitsWarper(min_p=p["min_p"], min_tokens_to_keep=1))
    return LogitsProcessorList(procs)


def f32(x):
    return float(torch.tensor(x, dtype=torch.float32))


def main():
    g = torch.Generator().manual_seed(1234)
    cases = []
    grid = [
        dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, repetition_penalty=1.3),
        dict(temperature=0.7, top_k=0, top_p=1.0, min_p=0.0, repetition_penalty=1.0),
        dict(temperature=1.0, top_k=5, top_p=1.0, min_p=0.0, repetition_penalty=1.0),
        dict(temperature=1.0, top_k=100, top_p=1.0, min_p=0.0, repetition_penalty=1.0),
        dict(temperature=1.0, top_k=0, top_p=0.9, min_p=0.0, repetition_penalty=1.0),
        dict(temperature=1.0, top_k=0, top_p=0.3, min_p=0.0, repetition_penalty=1.0),
        dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.1, repetition_penalty=1.0),
        dict(temperature=0.8, top_k=20, top_p=0.95, min_p=0.05, repetition_penalty=1.2),
        dict(temperature=1.5, top_k=10, top_p=0.5, min_p=0.2, repetition_penalty=0.8),
        dict(temperature=0.6, top_k=0, top_p=0.8, min_p=0.0, repetition_penalty=1.1),
    ]
    for ci, p in enumerate(grid):
        V = 64
        logits = (torch.randn(1, V, generator=g) * 3).to(torch.float32)
        ids = torch.randint(0, V, (1, 12), generator=g)
        out = pipeline(p)(ids, logits.clone())
        cases.append({
            "params": {k: (f32(v) if isinstance(v, float) else v) for k, v in p.items()},
            "logits": [float(x) for x in logits[0]],
            "ids": [int(x) for x in ids[0]],
            "out": [None if x == float("-inf") else float(x) for x in out[0]],
        })
    # The distribution, logits = log p (float32), through top-p alone.
    probs = torch.tensor([[0.0625, 0.25, 0.1875, 0.5]])
    topp = []
    for p in [0.5, 0.74, 0.75, 0.76, 0.9, 1.0]:
        out = TopPLogitsWarper(top_p=p)(None, probs.log()) if p < 1 else probs.log()
        topp.append({"top_p": p, "kept": [i for i in range(4) if out[0, i] != float("-inf")]})
    # Ties: which of equal logits top-p and top-k remove.
    ties = []
    for row, p in [([0.0] * 6, 0.5), ([1.0, 2.0, 2.0, 2.0, 0.0, 2.0], 0.4),
                   ([3.0, 1.0, 3.0, 1.0, 1.0], 0.7)]:
        out = TopPLogitsWarper(top_p=p)(None, torch.tensor([row]))
        ties.append({"logits": row, "top_p": p,
                     "kept": [i for i in range(len(row)) if out[0, i] != float("-inf")]})
    print(json.dumps({"transformers": transformers.__version__, "torch": torch.__version__,
                      "cases": cases, "top_p_issue": topp, "top_p_ties": ties}, indent=1))


if __name__ == "__main__":
    main()
