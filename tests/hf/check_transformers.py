#!/usr/bin/env python3
"""Check that model folders saved by icl load in Hugging Face transformers
unchanged and give icl's logits.  Not part of make check (needs torch and
transformers, e.g. a venv: python3 -m venv --system-site-packages V &&
V/bin/pip install transformers; Debian's python3-torch suffices).

usage: check_transformers.py ICL_ROUNDTRIP_BINARY FIXTURES_DIR OUT_DIR
For each fixture (tests/data/model): icl loads
FIXTURES_DIR/NAME/model and saves OUT_DIR/NAME; transformers loads OUT_DIR/NAME
(AutoModelForCausalLM) and its logits on the fixture batch must match icl's
and the fixture's to 1e-5 of the largest |logit| at the real positions."""
import json, os, subprocess, sys
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

binary, fixtures, out = sys.argv[1:4]
ok = True
for name in ["llama-tiny", "gpt2-tiny", "qwen2-tiny", "llama3-bias-tiny", "gpt2-inner-tiny", "stories260K"]:
    exp_path = os.path.join(fixtures, name, "expected.json")
    if not os.path.exists(exp_path) or "input_ids" not in json.load(open(exp_path)):
        exp = {"input_ids": [[1, 5, 9, 200, 33, 17, 2, 44]], "attention_mask": [[1] * 8]}
        exp_path = os.path.join(out, name + ".batch.json")
        os.makedirs(out, exist_ok=True)
        json.dump(exp, open(exp_path, "w"))
    exp = json.load(open(exp_path))
    dst = os.path.join(out, name)
    subprocess.run([binary, os.path.join(fixtures, name, "model"), dst, exp_path], check=True)
    model = AutoModelForCausalLM.from_pretrained(dst, torch_dtype=torch.float32).eval()
    ids = torch.tensor(exp["input_ids"])
    mask = torch.tensor(exp["attention_mask"])
    with torch.no_grad():
        hf = model(input_ids=ids, attention_mask=mask).logits
    icl = load_file(os.path.join(dst, "icl_logits.safetensors"))["logits"]
    real = mask.bool()
    err = (hf[real] - icl[real]).abs().max().item()
    scale = hf[real].abs().max().item()
    good = err <= 1e-5 * scale
    ok &= good
    print("%-12s transformers %s loads icl's save; max |hf - icl| = %.3g (max |logit| %.3g) %s"
          % (name, model.__class__.__name__, err, scale, "ok" if good else "MISMATCH"))
sys.exit(0 if ok else 1)
