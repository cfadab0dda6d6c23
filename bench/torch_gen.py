#!/usr/bin/python3
"""bench/torch_gen.py - the peer of bench/gen.c: greedy decoding with a KV
cache in plain PyTorch (float32, no_grad), the same Llama config and the same
measurement (B prompts of P ids, N new tokens, prefill included, best of 3).
The model is written like transformers' LlamaForCausalLM (RMSNorm, rotate-half
RoPE, SwiGLU, causal attention over the cache), with q/k/v and gate/up fused
into single matrices as icl does (fewer, larger matmuls: this helps PyTorch).
usage: torch_gen.py THREADS BATCH [NEW [P]]   (run with Debian's /usr/bin/python3)"""
import sys, time, math
import torch

threads, B = int(sys.argv[1]), int(sys.argv[2])
N = int(sys.argv[3]) if len(sys.argv) > 3 else 128
P = int(sys.argv[4]) if len(sys.argv) > 4 else 16
torch.set_num_threads(threads)
torch.manual_seed(0)
V, C, L, H, I = 8192, 512, 8, 8, 1376
hd, eps, theta = C // H, 1e-6, 10000.0
MAXP = P + N
f32 = torch.float32

def w(*shape):
    return torch.randn(*shape, dtype=f32) * 0.02

emb = w(V, C)
layers = [dict(ln1=torch.ones(C), qkv=w(3 * C, C), o=w(C, C), ln2=torch.ones(C), gu=w(2 * I, C), down=w(C, I))
          for _ in range(L)]
normf, head = torch.ones(C), w(V, C)
inv_freq = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.int64).to(f32) / hd))

def rms(x, wt):
    return wt * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))

def rot_half(x):
    x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
    return torch.cat((-x2, x1), dim=-1)

def forward(ids, pos0, kc, vc):
    """ids [B, T] at positions pos0..pos0+T-1; kc, vc [L, B, H, MAXP, hd]; logits of the last position."""
    T = ids.shape[1]
    x = emb[ids]
    pos = torch.arange(pos0, pos0 + T, dtype=f32)
    fr = torch.outer(pos, inv_freq)
    e = torch.cat((fr, fr), dim=-1)
    cos, sin = e.cos()[None, None], e.sin()[None, None]
    S = pos0 + T
    mask = None
    if T > 1:
        mask = torch.full((T, S), float("-inf")).triu(pos0 + 1)
    for l, p in enumerate(layers):
        h = rms(x, p["ln1"])
        q, k, v = torch.nn.functional.linear(h, p["qkv"]).view(B, T, 3, H, hd).permute(2, 0, 3, 1, 4)
        q = q * cos + rot_half(q) * sin
        k = k * cos + rot_half(k) * sin
        kc[l, :, :, pos0:S] = k
        vc[l, :, :, pos0:S] = v
        s = torch.matmul(q, kc[l, :, :, :S].transpose(-1, -2)) / math.sqrt(hd)
        if mask is not None:
            s = s + mask
        a = torch.matmul(torch.softmax(s, dim=-1), vc[l, :, :, :S])
        x = x + torch.nn.functional.linear(a.transpose(1, 2).reshape(B, T, C), p["o"])
        h = rms(x, p["ln2"])
        g, u = torch.nn.functional.linear(h, p["gu"]).split(I, dim=-1)
        x = x + torch.nn.functional.linear(torch.nn.functional.silu(g) * u, p["down"])
    return torch.nn.functional.linear(rms(x[:, -1], normf), head)

prompts = (torch.arange(B * P, dtype=torch.int64) * 7919 + 13).remainder(V).view(B, P)
best = 0.0
with torch.no_grad():
    for rep in range(3):
        kc = torch.zeros(L, B, H, MAXP, hd)
        vc = torch.zeros(L, B, H, MAXP, hd)
        t0 = time.perf_counter()
        logits = forward(prompts, 0, kc, vc)
        nxt = logits.argmax(-1)
        for i in range(1, N):
            logits = forward(nxt[:, None], P + i - 1, kc, vc)
            nxt = logits.argmax(-1)
        dt = time.perf_counter() - t0
        best = max(best, B * N / dt)
print(f"pytorch  threads {threads} batch {B}: {best:8.1f} tokens/s (torch {torch.__version__})")
