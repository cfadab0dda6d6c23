#!/usr/bin/env python3
"""bench/llamacpp_gen.py - the peer of bench/gen_gguf.c: llama.cpp
(llama-cpp-python from PyPI, bench-deps) on the same GGUF file, prompt and
thread count: prefill tokens/s of PROMPT_LEN ids (one eval call, n_batch 512)
and greedy decode tokens/s (argmax of the last logits, one eval per token,
eos ignored), each the best of 3 runs.  llama.cpp decodes one sequence per
call, so BATCH sequences take BATCH times as long: its batch-B decode rate is
its batch-1 rate, and the script measures batch 1 only.

usage: llamacpp_gen.py MODEL.gguf THREADS NEW_TOKENS PROMPT_LEN IDS_FILE
"""
import sys
import time

import numpy as np
from llama_cpp import Llama

model, threads, N, P, ids_file = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
ids = [int(x) for x in open(ids_file).read().split()][:P]
llm = Llama(model_path=model, n_ctx=P + N + 8, n_batch=512, n_threads=threads, n_threads_batch=threads,
            verbose=False)
best_pre = best_dec = 0.0
for rep in range(3):
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(ids)
    t1 = time.perf_counter()
    for _ in range(N - 1):
        tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        llm.eval([tok])
    t2 = time.perf_counter()
    best_pre = max(best_pre, P / (t1 - t0))
    best_dec = max(best_dec, (N - 1) / (t2 - t1))
print("llama.cpp threads %d batch 1 prompt %d new %d: prefill %.1f tokens/s decode %.1f tokens/s"
      % (threads, P, N, best_pre, best_dec))
