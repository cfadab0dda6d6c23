#!/usr/bin/env python3
"""Does a GGUF file written by icl load and run in llama.cpp?

llama-cpp-python (PyPI, builds llama.cpp from source, ~10 minutes on 2 cores;
not needed by make check) decodes greedily from the same prompts as icl-gen
and the two id streams are compared.  For an F32 export the float32 model is
the same, so the ids should agree up to near-ties of two logits (llama.cpp
sums in another order); a quantized export differs more, since llama.cpp
quantizes activations to 8 bits for quantized weights (DESIGN.md).

usage: gguf_llamacpp.py [--lora LORA.gguf] MODEL.gguf PROMPTS.tok EXPECTED.tok [N]
  --lora        a llama.cpp LoRA adapter GGUF applied at scale 1 (llama-cli's
                --lora), e.g. written by icl-convert ADAPTER_DIR LORA.gguf;
                compare with icl-gen -m MODEL --adapter ADAPTER_DIR
  PROMPTS.tok   one prompt per line (token ids), e.g. tests/data/smollm2/greedy.in
  EXPECTED.tok  prompt TAB ids, e.g. icl-gen -m MODEL.gguf --ids --greedy -n N
A model needs its tokenizer.ggml.* keys for llama.cpp to load it: write it
with icl-convert --type F32 --like SOURCE.gguf DIR OUT.gguf.

llama.cpp's KV cache is F16 by default; this script makes it F32
(type_k/type_v 0) so that an F32 model is float32 everywhere, as in icl-gen;
ICL_LLAMACPP_KV_F32=0 keeps the default.  With it, a merged F32 export and an
adapter GGUF both give 128 of 128 of icl-gen's ids (bench/RESULTS.md).

Measured earlier (F16 cache) 2026-12-03 with llama-cpp-python 0.3.36 (SmolLM2-135M-Instruct,
F32 export of the Q4_1 file's dequantized weights, the 4 prompts of
tests/data/smollm2/greedy.in, 40 tokens or up to <|im_end|>): 126 of 128 ids
identical; prompt 1 differs from its 39th token on, where icl's two best
logits are 27.6518 (id 5909, transformers' choice too) and 27.6502 (3445,
llama.cpp's): a near-tie.
"""
import os
import sys

from llama_cpp import Llama


def main():
    args = sys.argv[1:]
    lora = None
    if args[:1] == ["--lora"]:
        lora, args = args[1], args[2:]
    model, prompts, expected = args[:3]
    n = int(args[3]) if len(args) > 3 else 40
    kv = {}
    if os.environ.get("ICL_LLAMACPP_KV_F32", "1") != "0":
        kv = dict(type_k=0, type_v=0)  # GGML_TYPE_F32: llama.cpp's KV cache is F16 by default
    llm = Llama(model_path=model, lora_path=lora, n_ctx=1024, n_threads=2, verbose=False, **kv)
    want = [line.rstrip("\n").split("\t")[1].split() for line in open(expected)]
    same = total = 0
    for i, line in enumerate(open(prompts)):
        ids = [int(x) for x in line.split()]
        out = []
        for tok in llm.generate(ids, top_k=1, temp=0.0, reset=True):
            out.append(tok)
            if tok == llm.token_eos() or len(out) == n:
                break
        w = [int(x) for x in want[i]]
        k = next((j for j in range(min(len(out), len(w))) if out[j] != w[j]), min(len(out), len(w)))
        same += k
        total += len(w)
        diff = f" (first difference at {k}: icl {w[k]}, llama.cpp {out[k]})" if k < min(len(out), len(w)) else (
            "" if k == len(w) == len(out) else f" (first difference at {k}: one stream ends)")
        print(f"prompt {i}: {k} of {len(w)} ids identical" + diff)
    print(f"{same} of {total} ids identical")
    return 0 if same == total else 1


if __name__ == "__main__":
    sys.exit(main())
