#!/usr/bin/env python3
"""bench/mpi_model.py - the model on paper of data-parallel icl-train (doc/mpi.md).

Bytes all-reduced per optimizer step (F32 gradients of the trainable sets:
icl-train reduces them once per step, after the backward), the time of a
ring all-reduce of that many bytes on 1, 10 and 100 Gbit/s links for 2, 8
and 64 hosts, and the tokens per host per step above which compute hides
that time.  Standard library only; prints Markdown.

Ring all-reduce (reduce-scatter + all-gather, as Open MPI's large-message
algorithm): every host sends and receives 2 (p-1)/p S bytes in 2 (p-1)
rounds, so  t = 2 (p-1)/p * S / B + 2 (p-1) alpha,  B the link's bandwidth
in bytes/s, alpha the per-message latency (50 us: TCP over Ethernet).

Compute: measured ~135 tokens/s full fine-tune of SmolLM2-135M per 2-core
host (issue 14: ~6 N FLOP per token, 109 GFLOP/s).  Other cases are scaled
by FLOPs at that rate: full fine-tune 6 N, LoRA ~4 N (no weight gradients
of the frozen base; the adapters' FLOPs are negligible), N the model's
parameters (the 0.5B: 135/(494/134.5) tokens/s full).
"""

ALPHA = 50e-6          # s per message (TCP)
RATE = 135 * 6 * 134.5e6  # FLOP/s per 2-core host, from the measured 135 tokens/s

def llama_params(hidden, layers, heads, kv_heads, inter, vocab, tied, qkv_bias=False):
    hd = hidden // heads
    kv = kv_heads * hd
    attn = hidden * hidden * 2 + hidden * kv * 2 + (hidden + 2 * kv if qkv_bias else 0)
    mlp = 3 * hidden * inter
    per_layer = attn + mlp + 2 * hidden
    emb = vocab * hidden * (1 if tied else 2)
    return emb + layers * per_layer + hidden

def lora_params(hidden, layers, heads, kv_heads, inter, r=16):
    """PEFT LoRA, target_modules all-linear (q,k,v,o,gate,up,down): A [r, in] + B [out, r]."""
    kv = kv_heads * (hidden // heads)
    shapes = [(hidden, hidden), (hidden, kv), (hidden, kv), (hidden, hidden),
              (hidden, inter), (hidden, inter), (inter, hidden)]
    return layers * sum(r * (i + o) for i, o in shapes)

MODELS = {
    # name: (hidden, layers, heads, kv_heads, intermediate, vocab, tied, qkv_bias)
    "SmolLM2-135M": (576, 30, 9, 3, 1536, 49152, True, False),
    "Qwen2.5-0.5B": (896, 24, 14, 2, 4864, 151936, True, True),
}

def ring_s(nbytes, p, gbit):
    return 2 * (p - 1) / p * nbytes / (gbit * 1e9 / 8) + 2 * (p - 1) * ALPHA

def main():
    rows = []
    for name, c in MODELS.items():
        n = llama_params(*c)
        nl = lora_params(*c[:5])
        rows.append((name, "full", n, n, 6))
        rows.append((name, "LoRA r16", n, nl, 4))
    print("| model | training | parameters | trainable | MB all-reduced per step |")
    print("|---|---|---:|---:|---:|")
    for name, kind, n, nt, _ in rows:
        print(f"| {name} | {kind} | {n:,} | {nt:,} | {nt * 4 / 1e6:.1f} |")
    print()
    print("Ring all-reduce time per step (seconds; alpha = 50 us):")
    print()
    print("| model | training | hosts | 1 Gbit/s | 10 Gbit/s | 100 Gbit/s |")
    print("|---|---|---:|---:|---:|---:|")
    for name, kind, n, nt, _ in rows:
        for p in (2, 8, 64):
            t = [ring_s(nt * 4, p, g) for g in (1, 10, 100)]
            print(f"| {name} | {kind} | {p} | " + " | ".join(f"{x:.3g}" for x in t) + " |")
    print()
    print("Tokens per host per step above which compute (2-core host) takes longer")
    print("than the all-reduce (ring, 8 hosts; about the same for 2 to 64):")
    print()
    print("| model | training | tokens/s per host | 1 Gbit/s | 10 Gbit/s | 100 Gbit/s |")
    print("|---|---|---:|---:|---:|---:|")
    for name, kind, n, nt, k in rows:
        tps = RATE / (k * n)
        t = [ring_s(nt * 4, 8, g) for g in (1, 10, 100)]
        print(f"| {name} | {kind} | {tps:.0f} | " + " | ".join(f"{tps * x:,.0f}" for x in t) + " |")

if __name__ == "__main__":
    main()
