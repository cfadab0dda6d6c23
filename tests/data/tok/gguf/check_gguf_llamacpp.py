#!/usr/bin/env python3
"""Check that llama.cpp reads tokenizer metadata written by icl (for instance
icl_tok_gguf_from_hf + icl_tok_gguf_set_kvs on a Hugging Face tokenizer.json,
as icl-convert does) and tokenizes llama.cpp's test vectors to its expected
ids.  Needs llama-cpp-python (make bench-deps); not used by make check.

Usage: check_gguf_llamacpp.py FILE.gguf VOCAB.inp VOCAB.out
  (the GGUF needs general.architecture and that architecture's hyperparameter
  keys for llama.cpp to open it, vocab only).  Exits 1 unless all identical.
"""
import sys

from llama_cpp import Llama


def main():
    g, inp, out = sys.argv[1:4]
    llm = Llama(model_path=g, vocab_only=True, verbose=False)
    texts = open(inp, encoding="utf-8").read().split("\n__ggml_vocab_test__\n")[:-1]
    ref = [[int(x) for x in l.split()] for l in open(out).read().split("\n")[:len(texts)]]
    got = [llm.tokenize(t.encode("utf-8"), add_bos=False, special=False) for t in texts]
    same = sum(a == b for a, b in zip(got, ref))
    print(f"{g}: llama.cpp gives {same} of {len(texts)} identical")
    for t, a, b in zip(texts, got, ref):
        if a != b:
            print(f"  {t[:50]!r}\n    got  {a[:20]}\n    want {b[:20]}")
            break
    sys.exit(0 if same == len(texts) else 1)


if __name__ == "__main__":
    main()
