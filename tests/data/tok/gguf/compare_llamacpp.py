#!/usr/bin/env python3
"""Compare icl's tokenizer of a GGUF file with llama.cpp's, line by line.

Usage: compare_llamacpp.py ICL_TOK FILE.gguf TEXTS
  ICL_TOK: the icl-tok program (bin/icl-tok); TEXTS: one text per line
  (e.g. smollm2-lines.txt).  Each line goes to `icl-tok encode -t FILE.gguf
  --no-bos --no-eos` as {"text": line} and to llama-cpp-python (vocab only,
  no BOS, special tokens not parsed).  Prints how many lines agree; exits 1
  unless all do.  Needs llama-cpp-python (make bench-deps); not run by
  make check.
"""
import json
import subprocess
import sys

from llama_cpp import Llama


def main():
    icl_tok, gguf, texts = sys.argv[1:4]
    lines = open(texts, encoding="utf-8").read().split("\n")[:-1]
    recs = "".join(json.dumps({"text": l}, ensure_ascii=False) + "\n" for l in lines)
    out = subprocess.run([icl_tok, "encode", "-t", gguf, "--no-bos", "--no-eos"], input=recs.encode(),
                         capture_output=True, check=True).stdout.decode().split("\n")
    mine = [[int(x) for x in l.split()] for l in out[1:1 + len(lines)]]
    llm = Llama(model_path=gguf, vocab_only=True, verbose=False)
    same = 0
    for l, m in zip(lines, mine):
        r = llm.tokenize(l.encode("utf-8"), add_bos=False, special=False)
        if r == m:
            same += 1
        elif len(lines) - same <= 3:
            print(f"  {l[:60]!r}\n    icl       {m[:20]}\n    llama.cpp {r[:20]}")
    print(f"{gguf}: {same} of {len(lines)} lines identical to llama.cpp")
    sys.exit(0 if same == len(lines) else 1)


if __name__ == "__main__":
    main()
