#!/usr/bin/env python3
"""Reference values for model variants the shared fixtures do not cover, made
the same way as tests/hf/fixtures/make_fixtures.py (random seeded model with
randomised norms and biases, a right-padded batch of two prompt/response
examples, HF loss/logits/gradients).  Run with transformers (4.46.3 was used,
with Debian's python3-torch 1.13):
    V/bin/python tests/hf/make_variants.py tests/data/model
Variants:
  llama3-bias-tiny: Llama with llama3 rope scaling, attention_bias and
    mlp_bias, GQA 4:1, head_dim 8 != hidden/heads, tied embeddings.
  gpt2-inner-tiny: GPT-2 with n_inner 96 and gelu_pytorch_tanh, untied head."""
import json, os, sys
import torch
import transformers
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

OUT = sys.argv[1]
torch.set_num_threads(1)

def perturb_constants(model, g):
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.dim() == 1:
                if torch.all(p == 1):
                    p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
                elif torch.all(p == 0):
                    p.copy_(0.05 * torch.randn(p.shape, generator=g))

def fixture(name, model, seed, B=2, T=12, prompt_lens=(4, 3)):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    perturb_constants(model, g)
    model.train()
    model.save_pretrained(os.path.join(d, "model"), safe_serialization=True)
    V = model.config.vocab_size
    lengths = [T, T - 3]
    ids = torch.randint(0, V, (B, T), generator=g)
    attn = torch.zeros(B, T, dtype=torch.long)
    labels = ids.clone()
    for b in range(B):
        attn[b, :lengths[b]] = 1
        labels[b, :prompt_lens[b]] = -100
        labels[b, lengths[b]:] = -100
        ids[b, lengths[b]:] = 0
    out = model(input_ids=ids, attention_mask=attn, labels=labels)
    out.loss.backward()
    grads = {n: p.grad.detach().clone().contiguous() for n, p in model.named_parameters()}
    gnorm = float(torch.sqrt(sum((gr.double() ** 2).sum() for gr in grads.values())))
    save_file({"logits": out.logits.detach().contiguous()}, os.path.join(d, "logits.safetensors"))
    save_file(grads, os.path.join(d, "grads.safetensors"))
    ref = type(model).from_pretrained(os.path.join(d, "model")).float().eval()
    prompt = ids[0, :5].tolist()
    seq = list(prompt)
    with torch.no_grad():
        for _ in range(12):
            seq.append(int(torch.argmax(ref(input_ids=torch.tensor([seq])).logits[0, -1])))
    meta = {"model_class": type(model).__name__, "seed": seed, "input_ids": ids.tolist(),
            "attention_mask": attn.tolist(), "labels": labels.tolist(), "lengths": lengths,
            "prompt_lens": list(prompt_lens), "loss": float(out.loss),
            "n_target_tokens": int((labels[:, 1:] != -100).sum()), "grad_norm_l2": gnorm,
            "greedy": {"prompt": prompt, "output": seq, "new_tokens": 12},
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__}}
    json.dump(meta, open(os.path.join(d, "expected.json"), "w"), indent=1)
    print(name, "loss", meta["loss"], "gnorm", gnorm)

torch.manual_seed(11)
fixture("llama3-bias-tiny", LlamaForCausalLM(LlamaConfig(
    vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=1, head_dim=8, max_position_embeddings=64, rms_norm_eps=1e-5, rope_theta=10000.0,
    rope_scaling={"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                  "original_max_position_embeddings": 16},
    attention_bias=True, mlp_bias=True, tie_word_embeddings=True, initializer_range=0.1,
    bos_token_id=1, eos_token_id=[2, 3], pad_token_id=0, attn_implementation="eager")).float(), seed=11)
torch.manual_seed(12)
fixture("gpt2-inner-tiny", GPT2LMHeadModel(GPT2Config(
    vocab_size=96, n_positions=32, n_embd=48, n_layer=2, n_head=3, n_inner=96,
    activation_function="gelu_pytorch_tanh", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    layer_norm_epsilon=1e-5, initializer_range=0.1, tie_word_embeddings=False,
    bos_token_id=95, eos_token_id=95, attn_implementation="eager")).float(), seed=12)
