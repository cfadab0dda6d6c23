#!/usr/bin/env python3
"""A 96-token byte-level BPE tokenizer for the 96-token tiny models (tests).

ASCII 33..124 are ids 0..91, space as "\u0120" (92), two merges ("l l" 93 and
"\u0120 w" 94; --merges B lists them in the other order: another tokenizer with
the same vocabulary), <|endoftext|> (95, special).  Writes DIR/tokenizer.json
and DIR/tokenizer_config.json (--config: its JSON; default an EOS and a chat
template).  --pre: the pre_tokenizer as JSON (default ByteLevel without a
prefix space).  Used by t0622 and t3003.

usage: tok96.py DIR [--pre JSON] [--merges A|B] [--config JSON]
"""
import argparse
import json

ap = argparse.ArgumentParser()
ap.add_argument("dir")
ap.add_argument("--pre", default='{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, '
                                 '"use_regex": true}')
ap.add_argument("--merges", choices=["A", "B"], default="A")
ap.add_argument("--config", default='{"eos_token": "<|endoftext|>", '
                                    '"chat_template": "{% for m in messages %}{{ m.content }} {% endfor %}"}')
a = ap.parse_args()
v = {chr(c): c - 33 for c in range(33, 125)}
v.update({"\u0120": 92, "ll": 93, "\u0120w": 94, "<|endoftext|>": 95})
merges = ["l l", "\u0120 w"]
t = {"version": "1.0",
     "added_tokens": [{"id": 95, "content": "<|endoftext|>", "single_word": False, "lstrip": False,
                       "rstrip": False, "normalized": False, "special": True}],
     "normalizer": None, "pre_tokenizer": json.loads(a.pre), "post_processor": None,
     "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
     "model": {"type": "BPE", "vocab": v, "merges": merges if a.merges == "A" else merges[::-1]}}
json.dump(t, open(a.dir + "/tokenizer.json", "w"))
# json.loads keeps the big model_max_length as an int: written back exactly
json.dump(json.loads(a.config), open(a.dir + "/tokenizer_config.json", "w"))
