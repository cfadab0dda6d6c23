#!/usr/bin/env python3
"""Where icl-gen and llama.cpp part ways on a greedy continuation, is it a
near-tie?  transformers (float32, the merged Hugging Face folder) decodes
the same prompt greedily and prints, at each position where the two id
streams differ first, its two best logits.

usage: lora_hf_gap.py MERGED_DIR PROMPTS.tok ICL.tok I:K:ID...
  MERGED_DIR  icl-convert --adapter ADAPTER BASE_DIR MERGED_DIR
  ICL.tok     icl-gen output (prompt TAB ids) for PROMPTS.tok
  I:K:ID      prompt I's ids first differ at K, where llama.cpp chose ID
              (gguf_llamacpp.py prints them)
"""
import sys

import torch
from transformers import AutoModelForCausalLM


def main():
    d, prompts, icl = sys.argv[1:4]
    model = AutoModelForCausalLM.from_pretrained(d, torch_dtype=torch.float32)
    model.eval()
    prompts = [[int(x) for x in l.split()] for l in open(prompts)]
    icl = [[int(x) for x in l.rstrip("\n").split("\t")[1].split()] for l in open(icl)]
    for arg in sys.argv[4:]:
        i, k, lc = (int(x) for x in arg.split(":"))
        ctx = prompts[i] + icl[i][:k]
        with torch.no_grad():
            lg = model(torch.tensor([ctx])).logits[0, -1]
        top = torch.topk(lg, 2)
        print(f"prompt {i}, position {k}: icl chose {icl[i][k]}, llama.cpp {lc}; transformers' best two:"
              f" {top.indices[0].item()} ({top.values[0].item():.4f}), {top.indices[1].item()} ({top.values[1].item():.4f});"
              f" the logit of icl's choice {lg[icl[i][k]].item():.4f}, of llama.cpp's {lg[lc].item():.4f}")


if __name__ == "__main__":
    main()
