#!/usr/bin/env python3
"""llama.cpp's rope_freqs.weight for llama3 rope scaling, the reference of
test_gguf_model.c's llama3_rope_freqs: convert_hf_to_gguf.py (LlamaModel,
generate_extra_tensors; llama.cpp PR #8676) computes, from transformers'
rope_scaling {"rope_type": "llama3", factor, low_freq_factor,
high_freq_factor, original_max_position_embeddings}:

    freqs = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_freq_wavelen:   rope_factors.append(1)
        elif wavelen > low_freq_wavelen:  rope_factors.append(factor)
        else:
            smooth = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
            rope_factors.append(1 / ((1 - smooth) / factor + smooth))

and llama.cpp divides each frequency by its factor, which is transformers'
_compute_llama3_parameters.  Without torch: the float32 steps are rounded
to float32 here (struct), the rest in float64; the test allows 1e-6.
Prints C initialisers for the test; run: python3 llama3_rope_factors.py
"""
import math
import struct


def f32(x):
    return struct.unpack("f", struct.pack("f", x))[0]


def rope_factors(base, dim, factor, low, high, old):
    out = []
    for i in range(0, dim, 2):
        freq = f32(1.0 / f32(base ** f32(f32(i) / dim)))
        wavelen = f32(2 * math.pi / freq)
        if wavelen < old / high:
            out.append(1.0)
        elif wavelen > old / low:
            out.append(float(factor))
        else:
            smooth = f32((old / wavelen - low) / (high - low))
            out.append(f32(1 / ((1 - smooth) / factor + smooth)))
    return out


CASES = [
    # tests/data/model/llama3-bias-tiny/model/config.json
    ("llama3-bias-tiny", 10000.0, 8, 4.0, 1.0, 4.0, 16),
    # Llama 3.2 1B/3B: rope_theta 500000, head_dim 64, factor 32
    ("llama-3.2", 500000.0, 64, 32.0, 1.0, 4.0, 8192),
    # Llama 3.1 8B: head_dim 128, factor 8
    ("llama-3.1", 500000.0, 128, 8.0, 1.0, 4.0, 8192),
    # llama-tiny's sizes (rope_theta 10000, head_dim 16) with Llama 3.2's scaling
    ("llama-tiny-3.2", 10000.0, 16, 32.0, 1.0, 4.0, 8192),
]

if __name__ == "__main__":
    for name, base, dim, factor, low, high, old in CASES:
        v = rope_factors(base, dim, factor, low, high, old)
        print("/* %s: theta %g, head_dim %d, factor %g, low %g, high %g, original %d */" %
              (name, base, dim, factor, low, high, old))
        print("static const float RF_%s[%d] = {" % (name.replace("-", "_").replace(".", "_"), len(v)))
        for k in range(0, len(v), 4):
            print("    " + " ".join("%rf," % x for x in v[k:k + 4]))
        print("};")
