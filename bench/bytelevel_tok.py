#!/usr/bin/env python3
"""bench/bytelevel_tok.py V: a byte-level BPE tokenizer.json of exactly V ids
(the 256 bytes as GPT-2 maps them, then <xN> fillers, no merges) on standard
output, for the from-scratch models of bench-train, bench-load and bench-mpi,
where the vocabulary size is what matters, not the merges."""
import json, sys
V = int(sys.argv[1])
bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
cs = bs[:]; n = 0
for b in range(256):
    if b not in bs: bs.append(b); cs.append(256 + n); n += 1
vocab = {chr(c): i for i, c in enumerate(cs)}
for i in range(256, V): vocab["<x%d>" % i] = i
print(json.dumps({"version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
  "normalizer": None, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
  "post_processor": None, "decoder": {"type": "ByteLevel"},
  "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "vocab": vocab, "merges": []}}))
