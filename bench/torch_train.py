#!/usr/bin/python3
"""PyTorch peer of icl-train for bench/train.sh: the same Llama architecture
(RMSNorm, rotary, grouped-query attention, SwiGLU, untied head), the same
full training step (forward, backward, global-norm clipping at 1.0, AdamW
with decay on 2-D tensors), on random token ids, all positions trained.
Prints one line: "torch tokens_per_s MEDIAN threads N".
Run with Debian's /usr/bin/python3 (python3-torch)."""
import argparse, math, statistics, time
import torch
import torch.nn as nn
import torch.nn.functional as F

p = argparse.ArgumentParser()
for k, v in [("hidden", 256), ("layers", 4), ("heads", 4), ("kv", 2), ("inter", 768), ("vocab", 4096),
             ("batch", 8), ("seq", 256), ("steps", 8), ("threads", 1)]:
    p.add_argument("--" + k, type=int, default=v)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
hd = a.hidden // a.heads


class RMSNorm(nn.Module):
    def __init__(s, n, eps=1e-6):
        super().__init__(); s.w = nn.Parameter(torch.ones(n)); s.eps = eps
    def forward(s, x):
        return s.w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + s.eps))


def rope(T):
    inv = 1.0 / (10000 ** (torch.arange(0, hd, 2).float() / hd))
    f = torch.outer(torch.arange(T).float(), inv)
    e = torch.cat([f, f], -1)
    return e.cos(), e.sin()


def rot(x, cos, sin):
    x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


class Block(nn.Module):
    def __init__(s):
        super().__init__()
        s.n1 = RMSNorm(a.hidden); s.n2 = RMSNorm(a.hidden)
        s.q = nn.Linear(a.hidden, a.heads * hd, bias=False)
        s.k = nn.Linear(a.hidden, a.kv * hd, bias=False)
        s.v = nn.Linear(a.hidden, a.kv * hd, bias=False)
        s.o = nn.Linear(a.heads * hd, a.hidden, bias=False)
        s.g = nn.Linear(a.hidden, a.inter, bias=False)
        s.u = nn.Linear(a.hidden, a.inter, bias=False)
        s.d = nn.Linear(a.inter, a.hidden, bias=False)
    def forward(s, x, cos, sin, mask):
        B, T, C = x.shape
        h = s.n1(x)
        q = s.q(h).view(B, T, a.heads, hd).transpose(1, 2)
        k = s.k(h).view(B, T, a.kv, hd).transpose(1, 2)
        v = s.v(h).view(B, T, a.kv, hd).transpose(1, 2)
        q, k = rot(q, cos, sin), rot(k, cos, sin)
        r = a.heads // a.kv
        k, v = k.repeat_interleave(r, 1), v.repeat_interleave(r, 1)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(hd) + mask
        y = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, T, C)
        x = x + s.o(y)
        h = s.n2(x)
        return x + s.d(F.silu(s.g(h)) * s.u(h))


class LM(nn.Module):
    def __init__(s):
        super().__init__()
        s.emb = nn.Embedding(a.vocab, a.hidden)
        s.blocks = nn.ModuleList(Block() for _ in range(a.layers))
        s.norm = RMSNorm(a.hidden)
        s.head = nn.Linear(a.hidden, a.vocab, bias=False)
    def forward(s, ids):
        T = ids.shape[1]
        cos, sin = rope(T)
        mask = torch.full((T, T), float("-inf")).triu(1)
        x = s.emb(ids)
        for b in s.blocks:
            x = b(x, cos, sin, mask)
        return s.head(s.norm(x))


m = LM()
for prm in m.parameters():
    if prm.dim() >= 2:
        nn.init.normal_(prm, std=0.02)
decay = [q for q in m.parameters() if q.dim() >= 2]
nodecay = [q for q in m.parameters() if q.dim() < 2]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": nodecay, "weight_decay": 0.0}],
                        lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
g = torch.Generator().manual_seed(1)
rates = []
for step in range(a.steps):
    ids = torch.randint(0, a.vocab, (a.batch, a.seq), generator=g)
    t0 = time.perf_counter()
    logits = m(ids)
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, a.vocab), ids[:, 1:].reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
    opt.step()
    dt = time.perf_counter() - t0
    if step >= 2:
        rates.append(a.batch * a.seq / dt)
print("torch tokens_per_s %.1f threads %d loss %.4f" % (statistics.median(rates), a.threads, loss.item()))
