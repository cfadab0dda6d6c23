#!/usr/bin/env python3
"""Make the small GGUF vocabularies that tests/unit/test_tokgguf.c checks
llama.cpp's tokenizer test vectors against.

llama.cpp's models/ggml-vocab-NAME.gguf (../shared/data/tokenizers/llama.cpp-vocab,
0.7-4 MB each, 15 MB together) are too big to commit.  Tokenizing a text with
BPE only ever produces tokens that are substrings of that text (after the
byte-level map for "gpt2" vocabularies, after " " -> "▁" and a leading "▁" for
"llama" ones), and a merge can only fire when its result is such a token.  So
a vocabulary keeping
  - every token that is a substring of one of the test texts (so mapped),
  - every token that is not of type NORMAL (control, user-defined, unknown,
    byte, unused: they are matched or used otherwise),
  - the merges whose two halves and result are all kept, in their order,
with ids renumbered in increasing order (scores and types kept) tokenizes the
test texts exactly as the full one, up to the renumbering.  The original id of
each kept token is stored under the key "icl.test.original_ids" (uint32
array); the test maps ids back through it and compares with the .out files
unchanged.  Special token ids are renumbered too.

Usage: make_vocab_subsets.py SRC_DIR OUT_DIR NAME...
  (SRC_DIR holds ggml-vocab-NAME.gguf{,.inp,.out}; the .inp/.out are copied.)
Made with the `gguf` Python package 0.19.0.
"""
import shutil
import sys

import gguf
from gguf import GGUFReader, GGUFValueType, GGUFWriter


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


def field_value(f):
    t = f.types[0]
    if t == GGUFValueType.STRING:
        return bytes(f.parts[-1]).decode("utf-8")
    if t == GGUFValueType.ARRAY:
        if f.types[1] == GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        return [f.parts[i][0].item() for i in f.data]
    return f.parts[-1][0].item()


def main():
    src, out, names = sys.argv[1], sys.argv[2], sys.argv[3:]
    b2u = bytes_to_unicode()
    for name in names:
        base = f"{src}/ggml-vocab-{name}.gguf"
        texts = open(base + ".inp", encoding="utf-8").read().split("\n__ggml_vocab_test__\n")[:-1]
        r = GGUFReader(base)
        kv = {k: field_value(f) for k, f in r.fields.items() if not k.startswith("GGUF.")}
        types_ = {k: f.types for k, f in r.fields.items()}
        model = kv["tokenizer.ggml.model"]
        if model == "gpt2":
            hay = ["".join(b2u[b] for b in t.encode("utf-8")) for t in texts]
        else:
            hay = ["▁" + t.replace(" ", "▁") for t in texts]
        hay = "\x00".join(hay)
        tokens = kv["tokenizer.ggml.tokens"]
        ttype = kv.get("tokenizer.ggml.token_type", [1] * len(tokens))
        keep = [i for i, t in enumerate(tokens) if ttype[i] != 1 or t in hay]
        new_id = {old: new for new, old in enumerate(keep)}
        kept = set(tokens[i] for i in keep)
        w = GGUFWriter(f"{out}/ggml-vocab-{name}.gguf", kv["general.architecture"])
        for k, v in kv.items():
            if k in ("general.architecture",):
                continue
            if k == "tokenizer.ggml.tokens":
                v = [tokens[i] for i in keep]
            elif k in ("tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
                v = [v[i] for i in keep]
            elif k == "tokenizer.ggml.merges":
                v = [m for m in v if all(p in kept for p in m.split(" ", 1)) and m.replace(" ", "", 1) in kept]
            elif k.startswith("tokenizer.ggml.") and k.endswith("_token_id"):
                v = new_id[v]
            t = types_[k]
            if t[0] == GGUFValueType.ARRAY:
                w.add_key_value(k, v, GGUFValueType.ARRAY, sub_type=t[1])
            else:
                w.add_key_value(k, v, t[0])
        w.add_key_value("icl.test.original_ids", keep, GGUFValueType.ARRAY, sub_type=GGUFValueType.UINT32)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.close()
        for ext in (".inp", ".out"):
            shutil.copyfile(base + ext, f"{out}/ggml-vocab-{name}.gguf{ext}")
        print(f"{name}: {len(keep)} of {len(tokens)} tokens, "
              f"{len(kv.get('tokenizer.ggml.merges', []))} merges before")


if __name__ == "__main__":
    main()
