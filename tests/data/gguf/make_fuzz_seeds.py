#!/usr/bin/env python3
"""Seed corpus for the GGUF fuzz target (tests/fuzz/corpus/gguf).

Small GGUF files written by the reference writer, the `gguf` Python package
(llama.cpp's gguf-py): every metadata value type, arrays of numbers and of
strings, tensors of several ggml types, a non-default alignment, a version-2
header, a file with no tensors, and whole 1-layer llama, qwen2 and gpt2
models (and a llama of quantized blocks).  Each stays under the fuzzer's 4096-byte
max_len.  Run with /work/ref/venv/bin/python (needs gguf, numpy):

    python tests/data/gguf/make_fuzz_seeds.py tests/fuzz/corpus/gguf

It also copies seed-kinds to tests/data/gguf/kinds.gguf, which
tests/unit/test_gguf.c reads value by value.
"""
import os
import sys
import tempfile

import numpy as np
import gguf
from gguf import GGUFWriter, GGMLQuantizationType as T, GGUFValueType as V


def write(path, build, alignment=None, arch="llama"):
    with tempfile.TemporaryDirectory() as d:
        tmp = os.path.join(d, "x.gguf")
        w = GGUFWriter(tmp, arch)
        if alignment is not None:
            w.data_alignment = alignment
            w.add_uint32("general.alignment", alignment)
        build(w)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        data = open(tmp, "rb").read()
    assert len(data) <= 4096, (path, len(data))
    open(path, "wb").write(data)
    return data


def q(values, t):
    """Raw blocks of type t quantizing values (as uint8 bytes, shape [rows, row_bytes])."""
    return gguf.quants.quantize(values, t)


def kinds(w):
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -100)
    w.add_uint16("t.u16", 60000)
    w.add_int16("t.i16", -30000)
    w.add_uint32("t.u32", 4000000000)
    w.add_int32("t.i32", -2000000000)
    w.add_float32("t.f32", 1.5)
    w.add_bool("t.bool", True)
    w.add_string("t.str", "héllo")
    w.add_uint64("t.u64", 2**63 + 5)
    w.add_int64("t.i64", -(2**62))
    w.add_float64("t.f64", -2.25)
    w.add_array("t.arr_i32", [1, -2, 3])
    w.add_array("t.arr_str", ["a", "", "ccc"])
    w.add_key_value("t.arr_f32", [0.5, -1.0], V.ARRAY, V.FLOAT32)
    w.add_key_value("t.arr_bool", [True, False], V.ARRAY, V.BOOL)
    w.add_key_value("t.arr_u8", [1, 2, 255], V.ARRAY, V.UINT8)


def tensors(w):
    rng = np.random.default_rng(0)
    w.add_tensor("a.f32", rng.standard_normal((2, 3)).astype(np.float32))
    w.add_tensor("b.f16", rng.standard_normal((4,)).astype(np.float16))
    x = rng.standard_normal((2, 32)).astype(np.float32)
    w.add_tensor("c.q8_0", q(x, T.Q8_0), raw_dtype=T.Q8_0)
    w.add_tensor("d.q4_0", q(x, T.Q4_0), raw_dtype=T.Q4_0)
    y = rng.standard_normal((1, 256)).astype(np.float32)
    w.add_tensor("e.q6_k_raw", rng.integers(0, 256, (1, 210), dtype=np.uint8), raw_dtype=T.Q6_K)
    w.add_tensor("f.bf16", rng.integers(0, 65536, (3,), dtype=np.uint16).view(np.uint8).reshape(3, 2),
                 raw_dtype=T.BF16)
    del y


def model(w):
    w.add_block_count(1)
    w.add_context_length(16)
    w.add_embedding_length(4)
    w.add_feed_forward_length(8)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(["a", "b", "ab", "<s>"])
    w.add_token_types([1, 1, 1, 3])
    w.add_token_merges(["a b"])
    w.add_bos_token_id(3)


def micro(arch):
    """A whole 1-layer model of width 4 (2 heads of 2, 1 KV head), so the fuzzer
    reaches lib/gguf_model.c: the tensor table, un-permuting, transposing."""
    def build(w):
        rng = np.random.default_rng(1)
        f = lambda *shape: rng.standard_normal(shape).astype(np.float32)
        w.add_block_count(1)
        w.add_context_length(8)
        w.add_embedding_length(4)
        w.add_feed_forward_length(8)
        w.add_head_count(2)
        if arch == "gpt2":
            w.add_layer_norm_eps(1e-5)
            w.add_tensor("token_embd.weight", f(5, 4))
            w.add_tensor("position_embd.weight", f(8, 4))
            for n, shape in [("attn_norm", (4,)), ("attn_qkv", (12, 4)), ("attn_output", (4, 4)),
                             ("ffn_norm", (4,)), ("ffn_up", (8, 4)), ("ffn_down", (4, 8))]:
                w.add_tensor(f"blk.0.{n}.weight", f(*shape))
                w.add_tensor(f"blk.0.{n}.bias", f(shape[0]))
            w.add_tensor("output_norm.weight", f(4))
            w.add_tensor("output_norm.bias", f(4))
        else:
            w.add_head_count_kv(1)
            w.add_layer_norm_rms_eps(1e-5)
            w.add_rope_freq_base(10000.0)
            w.add_tensor("token_embd.weight", f(5, 4))
            for n, shape in [("attn_norm", (4,)), ("attn_q", (4, 4)), ("attn_k", (2, 4)), ("attn_v", (2, 4)),
                             ("attn_output", (4, 4)), ("ffn_norm", (4,)), ("ffn_gate", (8, 4)),
                             ("ffn_up", (8, 4)), ("ffn_down", (4, 8))]:
                w.add_tensor(f"blk.0.{n}.weight", f(*shape))
            for n, k in [("attn_q", 4), ("attn_k", 2), ("attn_v", 2)]:
                w.add_tensor(f"blk.0.{n}.bias", f(k))
            w.add_tensor("output_norm.weight", f(4))
            w.add_tensor("output.weight", f(5, 4))
    return build


def micro_q(w):
    """A 1-layer llama of width 32 whose matrices are quantized blocks, so the
    fuzzer reaches the QLoRA loader (icl_gguf_model_load keeping blocks):
    Q8_0 token_embd, Q4_1 output, Q4_0 attention (q|k|v fused, q/k rows
    un-permuted by whole rows of blocks), F32 FFN of width 1 (kept small)."""
    rng = np.random.default_rng(2)
    f = lambda *shape: rng.standard_normal(shape).astype(np.float32)
    def qt(name, shape, t):
        w.add_tensor(name, q(f(*shape), t), raw_dtype=t)
    w.add_block_count(1)
    w.add_context_length(8)
    w.add_embedding_length(32)
    w.add_feed_forward_length(1)
    w.add_head_count(4)
    w.add_head_count_kv(1)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    qt("token_embd.weight", (5, 32), T.Q8_0)
    w.add_tensor("blk.0.attn_norm.weight", f(32))
    for n, rows in [("attn_q", 32), ("attn_k", 8), ("attn_v", 8), ("attn_output", 32)]:
        qt(f"blk.0.{n}.weight", (rows, 32), T.Q4_0)
    w.add_tensor("blk.0.ffn_norm.weight", f(32))
    w.add_tensor("blk.0.ffn_gate.weight", f(1, 32))
    w.add_tensor("blk.0.ffn_up.weight", f(1, 32))
    w.add_tensor("blk.0.ffn_down.weight", f(32, 1))
    w.add_tensor("output_norm.weight", f(32))
    qt("output.weight", (5, 32), T.Q4_1)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    k = write(os.path.join(out, "seed-kinds"), kinds)
    open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "kinds.gguf"), "wb").write(k)
    write(os.path.join(out, "seed-tensors"), tensors)
    write(os.path.join(out, "seed-model"), lambda w: (model(w), w.add_tensor("token_embd.weight", np.ones((4, 4), np.float32))))
    write(os.path.join(out, "seed-align64"), lambda w: (kinds(w), w.add_tensor("x", np.arange(5, dtype=np.float32))),
          alignment=64)
    write(os.path.join(out, "seed-empty"), lambda w: None)
    for arch in ("llama", "qwen2", "gpt2"):
        write(os.path.join(out, "seed-micro-" + arch), micro(arch), arch=arch)
    write(os.path.join(out, "seed-micro-quant"), micro_q)
    d = bytearray(write(os.path.join(out, "seed-v2"), tensors))
    d[4] = 2  # version 2 has the same layout (64-bit counts) as 3
    open(os.path.join(out, "seed-v2"), "wb").write(bytes(d))


if __name__ == "__main__":
    main()
