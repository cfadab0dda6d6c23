#!/usr/bin/env python3
"""Check a Hugging Face tokenizer folder that icl wrote from a GGUF file
(icl_tok_gguf_write_hf: tokenizer.json + tokenizer_config.json) against
reference ids, with transformers' AutoTokenizer (not needed by make check).

Usage:
  check_hf_export.py DIR TEXTS IDS
      TEXTS: one text per line (smollm2-lines.txt), IDS: one id list per line
      (smollm2-lines.llamacpp.ids)
  check_hf_export.py DIR VOCAB.inp VOCAB.out
      llama.cpp's test vectors (texts separated by "\\n__ggml_vocab_test__\\n")
Prints how many texts give the same ids (no special tokens added) and the
special tokens transformers sees; exits 1 unless all are identical.
"""
import sys

from transformers import AutoTokenizer


def main():
    d, texts_path, ids_path = sys.argv[1:4]
    tok = AutoTokenizer.from_pretrained(d)
    raw = open(texts_path, encoding="utf-8").read()
    if texts_path.endswith(".inp"):
        texts = raw.split("\n__ggml_vocab_test__\n")[:-1]
    else:
        texts = raw.split("\n")[:-1]
    ref = [[int(x) for x in l.split()] for l in open(ids_path).read().split("\n")[:len(texts)]]
    got = [tok.encode(t, add_special_tokens=False) for t in texts]
    same = sum(a == b for a, b in zip(got, ref))
    print(f"{d}: {type(tok).__name__}, {same} of {len(texts)} identical; "
          f"bos {tok.bos_token!r} eos {tok.eos_token!r} pad {tok.pad_token!r}")
    for t, a, b in zip(texts, got, ref):
        if a != b:
            print(f"  {t[:60]!r}\n    got  {a[:30]}\n    want {b[:30]}")
            break
    sys.exit(0 if same == len(texts) else 1)


if __name__ == "__main__":
    main()
