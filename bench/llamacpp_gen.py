#!/usr/bin/env python3
"""bench/llamacpp_gen.py - the peer of bench/gen_gguf.c: llama.cpp
(llama-cpp-python from PyPI, bench-deps) on the same GGUF file, prompt and
thread count: prefill tokens/s of PROMPT_LEN ids (one eval call, n_batch 512)
and greedy decode tokens/s (Llama.generate with top_k 1, eos ignored, from
the first new token to the N-th), each the best of 3 runs.  llama.cpp decodes one sequence per
call, so BATCH sequences take BATCH times as long: its batch-B decode rate is
its batch-1 rate, and the script measures batch 1 only.

On a CPU with AMX-INT8 ggml routes the Q4_1 products to its AMX "extra
buffer type", which crashed there (segmentation fault in
ggml_backend_amx_mul_mat, llama-cpp-python 0.3.36 built natively on a
2-core Xeon under KVM, 2026-12-04): the script then loads the model without
extra buffer types (llama_model_params.use_extra_bufts false, as llama.cpp's
--no-extra-bufts; for Q4_1 that leaves llama.cpp's AVX-512 VNNI kernels,
the same instructions icl uses) and says so on stderr.
ICL_LLAMACPP_EXTRA_BUFTS=1 keeps them.

usage: llamacpp_gen.py MODEL.gguf THREADS NEW_TOKENS PROMPT_LEN IDS_FILE [LORA.gguf]
  LORA.gguf: a llama.cpp LoRA adapter applied at scale 1 (llama-cli's --lora;
  icl-convert ADAPTER_DIR LORA.gguf writes one), unmerged
"""
import os
import sys
import time

import llama_cpp.llama_cpp as lcpp
from llama_cpp import Llama


def has_amx():
    try:
        with open("/proc/cpuinfo") as f:
            return any(l.startswith("flags") and " amx_int8" in l for l in f)
    except OSError:
        return False


if has_amx() and os.environ.get("ICL_LLAMACPP_EXTRA_BUFTS") != "1":
    _defaults = lcpp.llama_model_default_params

    def _no_extra_bufts():
        p = _defaults()
        p.use_extra_bufts = False
        return p

    lcpp.llama_model_default_params = _no_extra_bufts  # what Llama() calls
    print("llamacpp_gen.py: AMX-INT8 CPU: llama.cpp without extra buffer types (its AMX path crashes here)",
          file=sys.stderr)

model, threads, N, P, ids_file = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
lora = sys.argv[6] if len(sys.argv) > 6 else None
ids = [int(x) for x in open(ids_file).read().split()][:P]
llm = Llama(model_path=model, lora_path=lora, n_ctx=P + N + 8, n_batch=512, n_threads=threads,
            n_threads_batch=threads, verbose=False)
best_pre = best_dec = 0.0
for rep in range(3):
    # prefill: one eval call of the P ids
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(ids)
    t1 = time.perf_counter()
    best_pre = max(best_pre, P / (t1 - t0))
    # decode: llama-cpp-python's own loop (Llama.generate, greedy top_k 1,
    # sampling in C), timed from the first new token to the N-th; faster
    # than an eval-and-argmax loop in Python (measured 60 against 49 tokens/s
    # on 1 thread here)
    n, t1 = 0, None
    for _ in llm.generate(ids, top_k=1, temp=0.0, reset=True):
        n += 1
        if n == 1:
            t1 = time.perf_counter()
        if n == N:
            break
    t2 = time.perf_counter()
    best_dec = max(best_dec, (N - 1) / (t2 - t1))
print("llama.cpp threads %d batch 1 prompt %d new %d%s: prefill %.1f tokens/s decode %.1f tokens/s"
      % (threads, P, N, " lora" if lora else "", best_pre, best_dec))
