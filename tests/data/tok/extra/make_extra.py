"""Extra reference values for icl's tokenizer: small BPE tokenizers built
with Hugging Face `tokenizers` (PyPI) that exercise the components the
fixtures of tests/hf/fixtures/make_fixtures.py do not (Metaspace, Split behaviours, Digits, Replace with
a regex, Lowercase, NFKC, Strip, added tokens with lstrip/rstrip/single_word/
normalized, unk/fuse_unk, byte_fallback, ignore_merges, a Llama-3 style
regex).  Not needed by make check; run it to remake the files:

    python3 -m venv /tmp/v && /tmp/v/bin/pip install tokenizers
    /tmp/v/bin/python tests/data/tok/extra/make_extra.py

Writes NAME.json.gz (tokenizer.json) and NAME.cases.json.gz ([{text, ids,
decoded}]) into this folder.  ids = encode(text, add_special_tokens=False),
decoded = decode(ids, skip_special_tokens=False).
"""
import gzip, json, os, sys

import tokenizers
from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models, normalizers,
                        pre_tokenizers, trainers)

HERE = os.path.dirname(os.path.abspath(__file__))
corpus = gzip.open(os.path.join(HERE, "..", "corpus.txt.gz"), "rt", encoding="utf-8").read()
train_text = corpus[:150000] + corpus[-150000:]
base = [c["text"] for c in json.load(open(os.path.join(HERE, "..", "qwen3.cases.json"), encoding="utf-8"))]
extra = [
    "<mask>", "a <mask> b", "  <mask>  x", "[X]   y", "[X]", "hello world", "say hello", "helloworld",
    "Hello WORLD", "WORLD", "the world is", "<0x41> <0xZZ>", "12345 678 9", "ＡＢＣ①⑴ ﬁ", "İstanbul ΣΑΣ",
    "ǅ ǈ", "tab\there", "  spaced   out  ", "▁already▁metaspace", "x" * 300, "1" * 50,
    "mixed 3.14 and 2,718", "new\n\nlines\r\n", "emoji 😀 and 𝔘𝔫𝔦", "café résumé", "a-b_c.d/e",
]
texts = base + extra


def save(name, tok):
    path = os.path.join(HERE, name + ".json")
    tok.save(path)
    tok = Tokenizer.from_file(path)
    with open(path, "rb") as f, gzip.open(path + ".gz", "wb", 9) as g:
        g.write(f.read())
    os.unlink(path)
    cases = []
    for t in texts:
        ids = tok.encode(t, add_special_tokens=False).ids
        cases.append({"text": t, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)})
    with gzip.open(os.path.join(HERE, name + ".cases.json.gz"), "wt", 9, encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=0)
    print(name, tok.get_vocab_size())


def train(tok, vocab=600, specials=(), **kw):
    tr = trainers.BpeTrainer(vocab_size=vocab, special_tokens=list(specials), show_progress=False, **kw)
    tok.train_from_iterator(train_text.split("\n"), tr)
    return tok


# 1. sentencepiece-like: Metaspace pre-tokenizer and decoder, unk + fuse_unk
t = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True))
t.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
t.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
save("metaspace", train(t, specials=["<unk>"], limit_alphabet=70))

# 2. Metaspace "first", no split, an added special token in the middle
t = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=False))
t.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
t.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first", split=False)
t = train(t, specials=["<unk>"], limit_alphabet=70)
t.add_special_tokens([AddedToken("<mask>", lstrip=True)])
save("metaspace-first", t)

# 3. normalizers and Digits before a ByteLevel without regex
for beh in ("removed", "isolated", "merged_with_previous", "merged_with_next", "contiguous"):
    for inv in (False, True):
        t = Tokenizer(models.BPE())
        t.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(r"\s+|[.,!?]"), behavior=beh, invert=inv),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        t.decoder = decoders.ByteLevel()
        save("split-%s%s" % (beh, "-invert" if inv else ""),
             train(t, vocab=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))

t = Tokenizer(models.BPE())
t.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase(),
                                     normalizers.Replace(Regex(r"\d{4,}"), "#"), normalizers.Strip()])
t.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                           pre_tokenizers.Split(" ", behavior="merged_with_next"),
                                           pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=False)])
t.decoder = decoders.ByteLevel()
t = train(t, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
t.add_tokens([AddedToken("WORLD", normalized=True), AddedToken("hello", single_word=True),
              AddedToken("[X]", rstrip=True, normalized=False)])
save("nfkc-lower-digits", t)

t = Tokenizer(models.BPE())
t.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=False),
                                           pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
t.decoder = decoders.ByteLevel()
save("digits-groups", train(t, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))

# 4. Llama-3 style: Split with its regex, ByteLevel without regex, ignore_merges
llama3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
          r"|\s*[\r\n]+|\s+(?!\S)|\s+")
t = Tokenizer(models.BPE(ignore_merges=True))
t.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(llama3), behavior="isolated"),
                                           pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
t.decoder = decoders.ByteLevel()
t = train(t, vocab=800, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
t.add_special_tokens(["<|begin_of_text|>", "<|end_of_text|>"])
save("llama3-style", t)

# 5. byte fallback with the <0xNN> pieces in the vocabulary, sentencepiece decoders
t = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
t.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
t.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                               decoders.Strip(" ", 1, 0)])
t = train(t, vocab=900, specials=["<unk>"] + ["<0x%02X>" % b for b in range(256)], limit_alphabet=60)
save("bytefallback", t)

print("tokenizers", tokenizers.__version__)
