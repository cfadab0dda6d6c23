#!/usr/bin/env python3
"""Reference ids for tokenizer.ggml.pre "llama-bpe" (Llama 3), whose own
vocabulary is not available here: Qwen3's vocabulary (tests/data/tok/
qwen3.json.gz, byte-level BPE like Llama 3's) run through Llama 3's
pre-tokenizer as its tokenizer.json writes it (Split of the regex with
(?i:'s|'t|...), Isolated, then ByteLevel without regex; model ignore_merges
true; no normalizer, as GGUF has none) by Hugging Face tokenizers.
test_tokgguf.c builds the GGUF-metadata tokenizer of the same vocabulary with
pre "llama-bpe" (llama.cpp's adapted regex) and compares.

Usage: make_llama3_pre_ids.py TESTS_DATA_DIR   (writes tok/gguf/llama3pre-qwen3vocab.ids:
  one line of ids per text: the 46 texts of ggml-vocab-gpt-2.gguf.inp, then
  the 1,000 lines of smollm2-lines.txt)
Made with tokenizers 0.20.3.
"""
import gzip
import json
import sys

from tokenizers import Tokenizer

LLAMA3_RE = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
             "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")


def main():
    d = sys.argv[1]
    j = json.loads(gzip.open(f"{d}/tok/qwen3.json.gz").read())
    j["normalizer"] = None
    j["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": LLAMA3_RE}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    j["model"]["ignore_merges"] = True
    tok = Tokenizer.from_str(json.dumps(j))
    texts = open(f"{d}/tok/gguf/ggml-vocab-gpt-2.gguf.inp", encoding="utf-8").read() \
        .split("\n__ggml_vocab_test__\n")[:-1]
    texts += open(f"{d}/tok/gguf/smollm2-lines.txt", encoding="utf-8").read().split("\n")[:-1]
    with open(f"{d}/tok/gguf/llama3pre-qwen3vocab.ids", "w") as f:
        for t in texts:
            f.write(" ".join(map(str, tok.encode(t, add_special_tokens=False).ids)) + "\n")
    print(len(texts), "texts")


if __name__ == "__main__":
    main()
