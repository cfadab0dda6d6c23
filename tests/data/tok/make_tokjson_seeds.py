#!/usr/bin/env python3
"""Seed inputs for tests/fuzz/fuzz_tokjson.c: small tokenizer.json files
(under 4 KB, libFuzzer's -max_len in tests/fuzz/run.sh) in the layout
Hugging Face tokenizers writes, one per family of components icl reads:

  seed-bytelevel   GPT-2 style: ByteLevel pre-tokenizer, decoder and
                   post-processor; the printable ASCII byte characters (the
                   256 would not fit), "Ġ", merges as "a b" strings, a
                   special added token;
  seed-spm         llama style: Prepend + Replace normalizers, BPE with
                   byte_fallback and a few <0xNN> tokens, unk_token, the
                   Replace/ByteFallback/Fuse/Strip decoders, a
                   TemplateProcessing post-processor adding <s>;
  seed-split       Qwen style: NFC, a Split regex (Isolated) before a
                   ByteLevel without its regex, merges as [a, b] arrays,
                   ignore_merges;
  seed-metaspace   Metaspace pre-tokenizer and decoder (prepend_scheme
                   first), Digits, NFKC + Lowercase + Strip;
  seed-behaviors   Split by a String pattern in each behavior, invert, a
                   Replace normalizer with a Regex, RobertaProcessing,
                   added tokens with lstrip/rstrip/single_word/normalized;
  seed-wordpiece   a WordPiece model (refused: icl reads BPE only).

Usage: make_tokjson_seeds.py OUT_DIR   (standard library only)
"""
import json
import os
import sys


def bytelevel_chars():
    """GPT-2's bytes_to_unicode for the printable ASCII bytes, and space."""
    return [chr(b) for b in range(ord("!"), ord("~") + 1)] + ["\u0120"]


def added(i, content, special=True, **kw):
    a = {"id": i, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": special}
    a.update(kw)
    return a


def bpe(vocab, merges, **kw):
    m = {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
         "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
         "vocab": vocab, "merges": merges}
    m.update(kw)
    return m


def tok(model, added_tokens=(), normalizer=None, pre=None, post=None, decoder=None):
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": list(added_tokens),
            "normalizer": normalizer, "pre_tokenizer": pre, "post_processor": post, "decoder": decoder,
            "model": model}


def vocab_of(pieces, first=0):
    return {p: first + i for i, p in enumerate(pieces)}


def seeds():
    out = {}
    bl = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}

    pieces = ["<|endoftext|>"] + bytelevel_chars()
    merges = ["h e", "l l", "he ll", "hell o", "\u0120 w", "o r", "\u0120w or", "l d", "\u0120wor ld"]
    for m in merges:
        pieces.append(m.replace(" ", ""))
    out["seed-bytelevel"] = tok(bpe(vocab_of(pieces), merges), [added(0, "<|endoftext|>")], None, bl, bl, bl)

    spm_pieces = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in (0x0A, 0x20, 0xE4, 0xBD, 0xA0)] + \
        ["\u2581", "h", "e", "l", "o", "w", "r", "d", "\u2581h", "ll", "\u2581he", "\u2581hell", "\u2581hello",
         "or", "\u2581w", "\u2581wor", "\u2581worl", "\u2581world"]
    spm_merges = ["\u2581 h", "l l", "\u2581h e", "\u2581he ll", "\u2581hell o", "o r", "\u2581 w",
                  "\u2581w or", "\u2581wor l", "\u2581worl d"]
    spm_norm = {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "\u2581"},
        {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]}
    spm_dec = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    spm_post = {"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}
    out["seed-spm"] = tok(bpe(vocab_of(spm_pieces), spm_merges, unk_token="<unk>", fuse_unk=True,
                              byte_fallback=True),
                          [added(0, "<unk>"), added(1, "<s>"), added(2, "</s>")], spm_norm, None, spm_post, spm_dec)

    qwen_re = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
    split_pre = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": qwen_re}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]}
    qm = [["h", "e"], ["l", "l"], ["he", "ll"], ["hell", "o"], ["\u0120", "w"], ["o", "r"]]
    qpieces = bytelevel_chars() + ["he", "ll", "hell", "hello", "\u0120w", "or"]
    out["seed-split"] = tok(bpe(vocab_of(qpieces), qm, ignore_merges=True),
                            [added(len(qpieces), "<|im_start|>"), added(len(qpieces) + 1, "<|im_end|>")],
                            {"type": "NFC"}, split_pre, bl, bl)

    ms_pre = {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": True}]}
    ms_norm = {"type": "Sequence", "normalizers": [{"type": "NFKC"}, {"type": "Lowercase"},
                                                   {"type": "Strip", "strip_left": True, "strip_right": True}]}
    mpieces = ["<unk>", "\u2581", "a", "b", "c", "1", "2", "\u2581a", "\u2581ab", "bc"]
    out["seed-metaspace"] = tok(bpe(vocab_of(mpieces), ["\u2581 a", "\u2581a b", "b c"], unk_token="<unk>"),
                                [added(0, "<unk>")], ms_norm, ms_pre, None,
                                {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first",
                                 "split": True})

    beh_pre = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"String": "-"}, "behavior": b, "invert": inv}
        for b, inv in (("Removed", False), ("MergedWithPrevious", False), ("MergedWithNext", True),
                       ("Contiguous", False))] + [bl]}
    beh_norm = {"type": "Replace", "pattern": {"Regex": "[0-9]+"}, "content": "#"}
    bpieces = ["<s>", "</s>"] + bytelevel_chars()
    beh_added = [added(0, "<s>"), added(1, "</s>"),
                 added(len(bpieces), "<mask>", lstrip=True),
                 added(len(bpieces) + 1, "[tool]", special=False, rstrip=True, normalized=True),
                 added(len(bpieces) + 2, "word", special=False, single_word=True)]
    out["seed-behaviors"] = tok(bpe(vocab_of(bpieces), []), beh_added, beh_norm, beh_pre,
                                {"type": "RobertaProcessing", "sep": ["</s>", 1], "cls": ["<s>", 0],
                                 "trim_offsets": True, "add_prefix_space": False}, bl)

    out["seed-wordpiece"] = tok({"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                                 "max_input_chars_per_word": 100,
                                 "vocab": vocab_of(["[UNK]", "[CLS]", "[SEP]", "a", "##b"])},
                                [added(0, "[UNK]"), added(1, "[CLS]"), added(2, "[SEP]")])
    return out


def main():
    d = sys.argv[1]
    os.makedirs(d, exist_ok=True)
    for name, t in seeds().items():
        b = json.dumps(t, ensure_ascii=False, separators=(",", ":")).encode()
        assert len(b) < 4096, (name, len(b))
        with open(os.path.join(d, name), "wb") as f:
            f.write(b)


if __name__ == "__main__":
    main()
