"""Reference for tests/unit/test_bpe_train.c's long_words case (issue 18
defect 3: merging was quadratic in a word's length).  Writes
tests/data/tok/longwords.txt.gz, a corpus of very long words (one 60,000-
letter word over 8 letters, runs of one letter and of repeated pairs whose
merges overlap, a few words repeated) and longwords-1000.json, what Hugging
Face tokenizers' BpeTrainer makes of it at vocabulary 1000 (ByteLevel
pre-tokenizer, no prefix space, special token <|endoftext|>, min_frequency 0).

Run: /work/ref/venv/bin/python tests/hf/bpe_long_words.py tests/data/tok
"""
import gzip, os, random, sys

from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers

out = sys.argv[1]
r = random.Random(18)
lines = [
    "".join(r.choice("abcdefgh") for _ in range(60000)),
    "a" * 5001,
    "ab" * 3000 + " " + "ab" * 3000,
    "aab" * 2000 + " " + "aaab" * 700,
    "x" * 4096 + "y" * 4095,
    " ".join("".join(r.choice("pqrs") for _ in range(r.randint(1, 40))) for _ in range(2000)),
    "The quick brown fox jumps over the lazy dog. " * 20,
]
text = "\n".join(lines) + "\n"
corpus = os.path.join(out, "longwords.txt")
with open(corpus, "w") as f:
    f.write(text)
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
tr = trainers.BpeTrainer(vocab_size=1000, special_tokens=["<|endoftext|>"],
                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
tok.train([corpus], tr)
tok.save(os.path.join(out, "longwords-1000.json"))
with open(corpus, "rb") as f, gzip.GzipFile(corpus + ".gz", "wb", mtime=0) as g:
    g.write(f.read())
os.remove(corpus)
print("vocab", tok.get_vocab_size())
