#!/usr/bin/env python3
"""GGUF files of the tiny fixture models, written as llama.cpp's
convert_hf_to_gguf.py lays them out, and checked against transformers' own
GGUF reader.

For each model folder under tests/data/model (llama-tiny, qwen2-tiny,
gpt2-tiny, gpt2-inner-tiny, and llama3-bias-tiny's weights without its rope
scaling, as llama-bias-tiny: q/k/v/o and MLP biases, 1 KV head, head_dim 8):
  NAME.f32.gguf    every tensor F32: llama's q/k rows (weights and biases)
                   permuted as LlamaModel.permute does, GPT-2's Conv1D weights
                   transposed and its head written as output.weight (a copy of
                   token_embd when tied), ARCH.* keys as llama.cpp writes them.
Then transformers 4.46's load_gguf_checkpoint must give back every HF tensor
bit for bit (so the layout here is the one transformers reads).
  llama-tiny.q4_1.gguf + llama-tiny.q4_1.expected.safetensors: the matrices
                   quantized to Q4_1 (the real model's type) and Q8_0 (the
                   embeddings), with what transformers' loader makes of them
                   (dequantized and un-permuted): icl must load the same floats.

Run with /work/ref/venv/bin/python (transformers 4.46.3, gguf, torch,
safetensors):  python tests/data/gguf/make_model_ggufs.py
"""
import json
import os

import numpy as np
import torch
import gguf
from gguf import GGUFWriter, GGMLQuantizationType as T
from safetensors.numpy import load_file, save_file
from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.join(HERE, "..", "model")


def permute(w, n_head, n_head_kv):
    # llama.cpp convert_hf_to_gguf.py LlamaModel.permute
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def llama_tensors(cfg, sd, qwen=False):
    H, KV = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    out = {"token_embd.weight": sd["model.embed_tokens.weight"], "output_norm.weight": sd["model.norm.weight"]}
    if "lm_head.weight" in sd:
        out["output.weight"] = sd["lm_head.weight"]
    names = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
             "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down"}
    for k, v in sd.items():
        if not k.startswith("model.layers."):
            continue
        parts = k.split(".")
        bid, rest, kind = parts[2], ".".join(parts[3:-1]), parts[-1]
        if not qwen and rest == "self_attn.q_proj":
            v = permute(v, H, H)
        if not qwen and rest == "self_attn.k_proj":
            v = permute(v, H, KV)
        out[f"blk.{bid}.{names[rest]}.{kind}"] = v
    return out


def gpt2_tensors(cfg, sd):
    sd = {k[len("transformer."):] if k.startswith("transformer.") else k: v for k, v in sd.items()}
    out = {"token_embd.weight": sd["wte.weight"], "position_embd.weight": sd["wpe.weight"],
           "output_norm.weight": sd["ln_f.weight"], "output_norm.bias": sd["ln_f.bias"],
           "output.weight": sd.get("lm_head.weight", sd["wte.weight"])}
    names = {"ln_1": "attn_norm", "attn.c_attn": "attn_qkv", "attn.c_proj": "attn_output", "ln_2": "ffn_norm",
             "mlp.c_fc": "ffn_up", "mlp.c_proj": "ffn_down"}
    for k, v in sd.items():
        if not k.startswith("h."):
            continue
        parts = k.split(".")
        bid, rest, kind = parts[1], ".".join(parts[2:-1]), parts[-1]
        if rest in ("attn", ) or k.endswith((".attn.bias", ".attn.masked_bias")):
            continue
        if kind == "weight" and rest in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
            v = np.ascontiguousarray(v.T)
        out[f"blk.{bid}.{names[rest]}.{kind}"] = v
    return out


def write(path, cfg, tensors, types=None):
    mt = cfg["model_type"]
    w = GGUFWriter(path, mt)
    w.add_name(os.path.basename(path).split(".")[0])
    if mt == "gpt2":
        C = cfg["n_embd"]
        w.add_context_length(cfg["n_positions"])
        w.add_embedding_length(C)
        w.add_feed_forward_length(cfg.get("n_inner") or 4 * C)
        w.add_block_count(cfg["n_layer"])
        w.add_head_count(cfg["n_head"])
        w.add_layer_norm_eps(cfg["layer_norm_epsilon"])
    else:
        C, H = cfg["hidden_size"], cfg["num_attention_heads"]
        hd = cfg.get("head_dim") or C // H
        w.add_vocab_size(cfg["vocab_size"])
        w.add_context_length(cfg["max_position_embeddings"])
        w.add_embedding_length(C)
        w.add_feed_forward_length(cfg["intermediate_size"])
        w.add_block_count(cfg["num_hidden_layers"])
        w.add_head_count(H)
        w.add_head_count_kv(cfg.get("num_key_value_heads", H))
        w.add_rope_freq_base(cfg.get("rope_theta") or cfg.get("rope_parameters", {}).get("rope_theta") or 10000.0)
        w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
        w.add_rope_dimension_count(hd)
        if hd * H != C:
            w.add_key_length(hd)
            w.add_value_length(hd)
    for k in ("bos_token_id", "eos_token_id", "pad_token_id"):
        v = cfg.get(k)
        if isinstance(v, list):
            v = v[0]
        if v is not None:
            getattr(w, {"bos_token_id": "add_bos_token_id", "eos_token_id": "add_eos_token_id",
                        "pad_token_id": "add_pad_token_id"}[k])(v)
    for name, v in tensors.items():
        t = (types or {}).get(name, T.F32)
        v = np.ascontiguousarray(v.astype(np.float32))
        if t == T.F32:
            w.add_tensor(name, v)
        else:
            w.add_tensor(name, gguf.quants.quantize(v, t), raw_dtype=t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def hf_view(mt, sd):
    """transformers' names and tensors (float32 numpy) from load_gguf_checkpoint."""
    return {k: v.numpy() for k, v in sd.items()}


def main():
    specs = [("llama-tiny", "llama-tiny"), ("qwen2-tiny", "qwen2-tiny"), ("gpt2-tiny", "gpt2-tiny"),
             ("gpt2-inner-tiny", "gpt2-inner-tiny"), ("llama3-bias-tiny", "llama-bias-tiny")]
    for src, name in specs:
        d = os.path.join(MODELS, src, "model")
        cfg = json.load(open(os.path.join(d, "config.json")))
        cfg.pop("rope_scaling", None)
        sd = load_file(os.path.join(d, "model.safetensors"))
        mt = cfg["model_type"]
        tensors = gpt2_tensors(cfg, sd) if mt == "gpt2" else llama_tensors(cfg, sd, qwen=mt == "qwen2")
        path = os.path.join(HERE, name + ".f32.gguf")
        write(path, cfg, tensors)
        back = load_gguf_checkpoint(path, return_tensors=True)["tensors"]
        for k, v in sd.items():
            kk = k
            if mt == "gpt2" and not k.startswith(("transformer.", "lm_head")):
                kk = "transformer." + k
            if kk.endswith((".attn.bias", ".attn.masked_bias")):
                continue
            b = back[kk].numpy()
            assert b.shape == v.shape and np.array_equal(b.view(np.uint32), v.view(np.uint32)), (name, k)
        print(f"{name}.f32.gguf: {len(tensors)} tensors; transformers reads back every HF tensor bit for bit")
    # quantized llama-tiny, with transformers' dequantized tensors as the expectation
    d = os.path.join(MODELS, "llama-tiny", "model")
    cfg = json.load(open(os.path.join(d, "config.json")))
    sd = load_file(os.path.join(d, "model.safetensors"))
    tensors = llama_tensors(cfg, sd)
    types = {k: (T.Q8_0 if k in ("token_embd.weight", "output.weight") else T.Q4_1)
             for k, v in tensors.items() if v.ndim == 2}
    path = os.path.join(HERE, "llama-tiny.q4_1.gguf")
    write(path, cfg, tensors, types)
    back = load_gguf_checkpoint(path, return_tensors=True)["tensors"]
    exp = {k: np.ascontiguousarray(v.numpy().astype(np.float32)) for k, v in back.items()}
    assert set(exp) == set(sd), set(exp) ^ set(sd)
    save_file(exp, os.path.join(HERE, "llama-tiny.q4_1.expected.safetensors"))
    print(f"llama-tiny.q4_1.gguf: {len(types)} quantized tensors; expected floats from transformers' loader")


if __name__ == "__main__":
    main()
