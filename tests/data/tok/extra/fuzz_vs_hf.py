"""Random strings (whitespace kinds, contractions, digits, scripts, emoji, special-token
text) encoded by bin/icl-tok and by HF tokenizers; prints differences.  Not run by
make check (needs a venv with tokenizers):  VENV/bin/python fuzz_vs_hf.py SEED TOKENIZER.json...
Run in a scratch folder (writes in.jsonl).  Measured (seeds 1, 2; 3000 strings each) on gpt2,
llama2, qwen3 and the extra tokenizers: all identical except strings with characters assigned
in Unicode 15/16 (PCRE2 10.42 knows Unicode 14; HF NFKC uses older tables)."""
import json, random, subprocess, sys
from tokenizers import Tokenizer
random.seed(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
pool = [" ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2028", "\u0085", "\u200b", "\u180e", "\u2009", "\u202f", "\u205f",
        "'s", "'S", "'ll", "'LL", "’s", "1", "12", "123", "1234", "½", "²", "٣", "Ⅻ", "a", "Z", "é", "é", "ß", "İ", "ǅ", "ﬁ", "Å", "Ω",
        "日", "本", "한", "ก", "ำ", "ि", "😀", "👍🏽", "🇫🇷", "\u0301", "!", "?", ".", ",", "-", "_", "<", ">", "|", "/", "\\", "$", "#",
        "<|endoftext|>", "<|im_start|>", "<s>", "</s>", "<think>", "<unk>", "▁", "Ġ", "<0x41>", "\x7f", "\x1b", "\ufeff", "\ufffd"]
def rnd():
    n = random.randint(0, 25)
    out = []
    for _ in range(n):
        r = random.random()
        if r < 0.5: out.append(random.choice(pool))
        elif r < 0.8: out.append("".join(random.choice("abcdefghijklmnopqrstuvwxyzABC ") for _ in range(random.randint(1, 8))))
        else: out.append(chr(random.choice([random.randint(0x20, 0x7e), random.randint(0xa0, 0x2fff), random.randint(0x3000, 0xd7ff), random.randint(0xe000, 0xfffd), random.randint(0x10000, 0x10ffff)])))
    return "".join(out)
texts = [rnd() for _ in range(3000)]
with open("in.jsonl", "w") as f:
    for t in texts: f.write(json.dumps({"text": t}) + "\n")
names = sys.argv[2:] or ["/tmp/gpt2.json", "/tmp/llama2.json", "/tmp/qwen3.json"]
for tk in names:
    t = Tokenizer.from_file(tk)
    out = subprocess.run(["/work/wt-tok/bin/icl-tok", "encode", "-t", tk, "--no-eos", "--no-bos", "--parse-special", "in.jsonl"], capture_output=True, check=True).stdout.decode().split("\n")[1:]
    bad = 0
    for s, line in zip(texts, out):
        ours = [int(x) for x in line.split("\t")[1].split()] if "\t" in line else None
        ref = t.encode(s, add_special_tokens=False).ids
        if ours != ref:
            bad += 1
            if bad <= 4: print("  DIFF", tk, repr(s), "\n   ours", ours, "\n   ref ", ref)
    print(tk, len(texts), "cases", len(texts) - bad, "identical")
