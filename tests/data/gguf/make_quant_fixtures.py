#!/usr/bin/env python3
"""Reference values for lib/quant.c, written as one GGUF file (quant.gguf).

Dequantization: for each type T of F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1,
Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, a tensor "deq.T" of random blocks (random
bytes, with the fp16 scale fields replaced by random finite halves, normal
and subnormal) and "deq.T.out", the F32 floats gguf.quants.dequantize (the
`gguf` package, llama.cpp's gguf-py) makes of them.

Quantization: "q.src" (F32 inputs: random values over many magnitudes, a zero
block, ties) and for T in F16, BF16, Q8_0, Q4_0, Q4_1 the tensor "q.T" that
gguf.quants.quantize makes of it.

tests/unit/test_quant.c checks icl against these bit for bit.  Run with
/work/ref/venv/bin/python (gguf, numpy):
    python tests/data/gguf/make_quant_fixtures.py tests/data/gguf/quant.gguf
"""
import sys

import numpy as np
import gguf
from gguf import GGUFWriter, GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES

# byte ranges holding fp16 scales in each block type (ggml-common.h)
HALVES = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}
NBLOCKS = 4


def finite_halves(rng, n):
    mag = 10.0 ** rng.uniform(-7, 3, n)  # reaches fp16 subnormals
    return (rng.standard_normal(n) * mag).astype(np.float16)


def main():
    out = sys.argv[1]
    rng = np.random.default_rng(20241203)
    w = GGUFWriter(out, "icl-quant-fixtures")
    w.add_string("general.description", "made by tests/data/gguf/make_quant_fixtures.py with gguf " +
                 getattr(gguf, "__version__", "?"))
    # dequantization
    for t in [T.F32, T.F16, T.BF16] + list(HALVES):
        blck, size = GGML_QUANT_SIZES[t]
        n = NBLOCKS * 256
        if t == T.F32:
            raw = (rng.standard_normal(n) * 10.0 ** rng.uniform(-40, 38, n)).astype(np.float32).view(np.uint8)
        elif t == T.F16:
            raw = finite_halves(rng, n).view(np.uint8)
        elif t == T.BF16:
            v = (rng.standard_normal(n) * 10.0 ** rng.uniform(-40, 38, n)).astype(np.float32)
            raw = (v.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)
        else:
            nb = n // blck
            raw = rng.integers(0, 256, (nb, size), dtype=np.uint8)
            for off in HALVES[t]:
                raw[:, off:off + 2] = finite_halves(rng, nb).view(np.uint8).reshape(nb, 2)
            raw = raw.reshape(-1)
        raw = raw.reshape(2, -1)  # two rows
        deq = gguf.quants.dequantize(raw, t).astype(np.float32, copy=False)
        assert deq.shape == (2, n // 2), deq.shape
        assert np.isfinite(deq).all()
        w.add_tensor("deq." + t.name, raw, raw_dtype=t)
        w.add_tensor("deq." + t.name + ".out", deq)
    # quantization
    m = 8 * 32
    src = (rng.standard_normal(m) * 10.0 ** rng.uniform(-9, 5, m)).astype(np.float32)
    src[32:64] = 0  # a zero block
    src[64:96] = np.arange(32, dtype=np.float32) - 15.5  # q = x/d hits .5 ties
    src[96] = 70000.0  # beyond fp16: inf
    src[97] = 65519.0  # rounds down to 65504
    src[98] = 2.0 ** -25  # tie to even 0
    src[99] = 3 * 2.0 ** -25  # tie to even, subnormal
    src[100] = 1.0 + 2.0 ** -11  # tie to even 1.0 in fp16
    src = src.reshape(2, -1)
    w.add_tensor("q.src", src)
    for t in (T.F16, T.BF16, T.Q8_0, T.Q4_0, T.Q4_1):
        q = gguf.quants.quantize(src, t)
        if t == T.F16:
            q = q.view(np.uint8)
        w.add_tensor("q." + t.name, q, raw_dtype=t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
