#!/usr/bin/env python3
"""bench/llamacpp_gen.py - the peer of bench/gen_gguf.c: llama.cpp
(llama-cpp-python from PyPI, bench-deps) on the same GGUF file, prompt and
thread count: prefill tokens/s of PROMPT_LEN ids (one eval call, n_batch 512)
and greedy decode tokens/s (Llama.generate with top_k 1, eos ignored, from
the first new token to the N-th), each the best of 3 runs.  llama.cpp decodes one sequence per
call, so BATCH sequences take BATCH times as long: its batch-B decode rate is
its batch-1 rate, and the script measures batch 1 only.

usage: llamacpp_gen.py MODEL.gguf THREADS NEW_TOKENS PROMPT_LEN IDS_FILE
"""
import sys
import time

from llama_cpp import Llama

model, threads, N, P, ids_file = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
ids = [int(x) for x in open(ids_file).read().split()][:P]
llm = Llama(model_path=model, n_ctx=P + N + 8, n_batch=512, n_threads=threads, n_threads_batch=threads,
            verbose=False)
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
print("llama.cpp threads %d batch 1 prompt %d new %d: prefill %.1f tokens/s decode %.1f tokens/s"
      % (threads, P, N, best_pre, best_dec))
