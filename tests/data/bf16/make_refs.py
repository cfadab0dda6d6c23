#!/usr/bin/env python3
"""Reference logits for icl's bf16 compute path (icl_model_set_bf16, --dtype bf16).

transformers runs the tiny fixture models (tests/data/model/{llama-tiny,gpt2-tiny})
in float32 with exactly the roundings icl's bf16 path makes: every matrix
product's weight (each nn.Linear / GPT-2 Conv1D, and the LM head, untied from
the embedding, which stays unrounded) and its input rounded to bfloat16 (round
to nearest even, torch's .to(torch.bfloat16)); embeddings, norms, attention
and softmax unrounded.  icl's logits must match these to float32 rounding,
not to bf16's, except where an activation's float32 values in icl and here
straddle a bf16 rounding boundary (the rounded values then differ by 2^-8,
and every later position of that row moves by ~1e-3: test_bf16.c allows for
it).  Float32 rather than float64: a float64 run straddles many more of them.  Writes
logits.<name>.safetensors here (the [B, T, V] logits of expected.json's
input_ids, float32).

Run: /work/ref/venv/bin/python tests/data/bf16/make_refs.py   (transformers 4.46.3, torch 1.13)
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM
from transformers.pytorch_utils import Conv1D

here = os.path.dirname(os.path.abspath(__file__))
data = os.path.dirname(here)


def bf(t):
    return t.to(torch.bfloat16).to(t.dtype)


def round_input(module, args):
    return (bf(args[0]),) + tuple(args[1:])


for name in ("llama-tiny", "gpt2-tiny"):
    d = os.path.join(data, "model", name)
    m = AutoModelForCausalLM.from_pretrained(os.path.join(d, "model"), torch_dtype=torch.float32)
    m.eval()
    head = m.get_output_embeddings()
    head.weight = torch.nn.Parameter(head.weight.detach().clone())  # untie: the embedding stays float
    for mod in m.modules():
        if isinstance(mod, (torch.nn.Linear, Conv1D)):
            with torch.no_grad():
                mod.weight.copy_(bf(mod.weight))
            mod.register_forward_pre_hook(round_input)
    exp = json.load(open(os.path.join(d, "expected.json")))
    ids = torch.tensor(exp["input_ids"])
    am = torch.tensor(exp["attention_mask"])
    with torch.no_grad():
        logits = m(input_ids=ids, attention_mask=am).logits
    save_file({"logits": logits.to(torch.float32).contiguous()}, os.path.join(here, f"logits.{name}.safetensors"))
    print(name, tuple(logits.shape), file=sys.stderr)
