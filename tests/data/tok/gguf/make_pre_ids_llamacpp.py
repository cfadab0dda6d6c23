#!/usr/bin/env python3
"""llama.cpp's ids for every tokenizer.ggml.pre value icl knows, on one
vocabulary: the cut-down gpt-2 GGUF of this folder (exact for these texts
whatever the pre-tokenizer: BPE only makes tokens that are substrings of the
text) with its tokenizer.ggml.pre replaced, tokenizing the 46 texts of
ggml-vocab-gpt-2.gguf.inp with llama-cpp-python (vocab only, no BOS, special
tokens not parsed).  test_tokgguf.c compares icl's GGUF tokenizer with each.

Usage: make_pre_ids_llamacpp.py DIR   (DIR = tests/data/tok/gguf; writes
  pre-NAME.ids, ids in the cut-down vocabulary's numbering)
Made with llama-cpp-python 0.3.36 and gguf 0.19.0.
"""
import os
import sys
import tempfile

from gguf import GGUFReader, GGUFValueType, GGUFWriter
from llama_cpp import Llama

PRES = ["default", "llama-bpe", "llama3", "llama-v3", "dbrx", "smaug-bpe", "deepseek-llm", "deepseek-coder",
        "falcon", "starcoder", "refact", "smollm", "command-r", "codeshell", "exaone", "minerva-7b", "gpt-2", "mpt",
        "phi-2", "olmo", "qwen2", "deepseek-r1-qwen", "stablelm2"]


def value(f):
    t = f.types[0]
    if t == GGUFValueType.STRING:
        return bytes(f.parts[-1]).decode("utf-8")
    if t == GGUFValueType.ARRAY:
        if f.types[1] == GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        return [f.parts[i][0].item() for i in f.data]
    return f.parts[-1][0].item()


def main():
    d = sys.argv[1]
    src = f"{d}/ggml-vocab-gpt-2.gguf"
    r = GGUFReader(src)
    texts = open(src + ".inp", encoding="utf-8").read().split("\n__ggml_vocab_test__\n")[:-1]
    with tempfile.TemporaryDirectory() as tmp:
        for pre in PRES:
            path = os.path.join(tmp, "v.gguf")
            w = GGUFWriter(path, "gpt2")
            for k, f in r.fields.items():
                if k.startswith("GGUF.") or k == "general.architecture":
                    continue
                v = pre if k == "tokenizer.ggml.pre" else value(f)
                if f.types[0] == GGUFValueType.ARRAY:
                    w.add_key_value(k, v, GGUFValueType.ARRAY, sub_type=f.types[1])
                else:
                    w.add_key_value(k, v, f.types[0])
            w.write_header_to_file()
            w.write_kv_data_to_file()
            w.close()
            llm = Llama(model_path=path, vocab_only=True, verbose=False)
            with open(f"{d}/pre-{pre}.ids", "w") as out:
                for t in texts:
                    out.write(" ".join(map(str, llm.tokenize(t.encode("utf-8"), add_bos=False, special=False)))
                              + "\n")
            del llm
            print(pre, "done")


if __name__ == "__main__":
    main()
