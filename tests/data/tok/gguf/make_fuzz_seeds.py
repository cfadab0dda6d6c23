#!/usr/bin/env python3
"""Seed inputs for tests/fuzz/fuzz_tokgguf.c: small GGUF files (under 4 KB,
libFuzzer's -max_len in tests/fuzz/run.sh) holding only tokenizer metadata.

Usage: make_fuzz_seeds.py OUT_DIR   (made with the `gguf` Python package 0.19.0)
  seed-gpt2-<pre>  byte-level BPE: the 256 byte characters would not fit, so
                   the printable ASCII ones, a few merges, a control and a
                   user-defined token, for several tokenizer.ggml.pre values;
  seed-llama       SentencePiece-style: <unk> <s> </s>, 256 <0xNN> byte
                   tokens would not fit either: the ones of "\\n" and a few
                   letters, scores, add_space_prefix;
  seed-lying       token_type shorter than tokens (refused).
"""
import sys

from gguf import GGUFValueType, GGUFWriter


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def write(path, kv):
    w = GGUFWriter(path, "llama")
    for k, (v, t, sub) in kv.items():
        if sub is None:
            w.add_key_value(k, v, t)
        else:
            w.add_key_value(k, v, GGUFValueType.ARRAY, sub_type=sub)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()


def main():
    out = sys.argv[1]
    A, S, U32, I32, F32, B = GGUFValueType.ARRAY, GGUFValueType.STRING, GGUFValueType.UINT32, \
        GGUFValueType.INT32, GGUFValueType.FLOAT32, GGUFValueType.BOOL
    b2u = bytes_to_unicode()
    base = [b2u[b] for b in b" \n\tabcdehilnorstw0123.,'"]
    merges = ["Ġ t", "h e", "Ġt he", "l l", "e ll", "h ell", "hell o", "Ġ w", "o r", "Ġw or", "Ġwor l", "Ġworl d",
              "' s", "1 2", "Ċ Ċ"]
    toks = base + [m.replace(" ", "") for m in merges] + ["<|endoftext|>", "<tool>"]
    types = [1] * (len(toks) - 2) + [3, 4]
    for pre in ("gpt-2", "llama-bpe", "qwen2", "smollm", "deepseek-llm", "deepseek-coder", "falcon", "default"):
        write(f"{out}/seed-gpt2-{pre}", {
            "tokenizer.ggml.model": ("gpt2", S, None), "tokenizer.ggml.pre": (pre, S, None),
            "tokenizer.ggml.tokens": (toks, A, S), "tokenizer.ggml.token_type": (types, A, I32),
            "tokenizer.ggml.merges": (merges, A, S),
            "tokenizer.ggml.eos_token_id": (len(toks) - 2, U32, None),
            "tokenizer.ggml.add_bos_token": (pre == "llama-bpe", B, None),
            "tokenizer.chat_template": ("{% for m in messages %}{{ m.content }}{% endfor %}", S, None)})
    st = ["<unk>", "<s>", "</s>", "<0x0A>", "<0x41>", "<0xE4>", "▁", "h", "e", "l", "o", "w", "r", "d",
          "he", "ll", "hell", "hello", "▁hello", "▁w", "or", "▁wor", "▁world", "ld", "你"]
    sc = [0.0] * 6 + [-1.0 * i for i in range(len(st) - 6)]
    ty = [2, 3, 3, 6, 6, 6] + [1] * (len(st) - 6)
    write(f"{out}/seed-llama", {
        "tokenizer.ggml.model": ("llama", S, None), "tokenizer.ggml.pre": ("default", S, None),
        "tokenizer.ggml.tokens": (st, A, S), "tokenizer.ggml.scores": (sc, A, F32),
        "tokenizer.ggml.token_type": (ty, A, I32), "tokenizer.ggml.bos_token_id": (1, U32, None),
        "tokenizer.ggml.eos_token_id": (2, U32, None), "tokenizer.ggml.unknown_token_id": (0, U32, None),
        "tokenizer.ggml.add_space_prefix": (True, B, None)})
    write(f"{out}/seed-lying", {
        "tokenizer.ggml.model": ("llama", S, None),
        "tokenizer.ggml.tokens": (st, A, S), "tokenizer.ggml.scores": (sc, A, F32),
        "tokenizer.ggml.token_type": (ty[:5], A, I32)})


if __name__ == "__main__":
    main()
