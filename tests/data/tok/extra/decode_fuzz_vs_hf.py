"""Random id sequences decoded by bin/icl-tok decode and by HF tokenizers (skip_special_tokens
=False).  Not run by make check:  VENV/bin/python decode_fuzz_vs_hf.py SEED TOKENIZER.json...
Measured (seed 1, 2000 sequences each): gpt2, llama2, qwen3 and the extra tokenizers all identical."""
import json, random, subprocess, sys
from tokenizers import Tokenizer
random.seed(int(sys.argv[1]))
for tk in sys.argv[2:]:
    t = Tokenizer.from_file(tk)
    V = t.get_vocab_size()
    hdr = subprocess.run(["/work/wt-tok/bin/icl-tok", "encode", "-t", tk], input=b"", capture_output=True, check=True).stdout.decode()
    f = dict(kv.split("=", 1) for kv in hdr.split()[2:] if "=" in kv)
    avoid = {int(f["bos"]), int(f["eos"])}
    seqs = []
    for _ in range(2000):
        n = random.randint(1, 12)
        s = []
        while len(s) < n:
            i = random.randrange(V) if random.random() < 0.5 else random.randrange(min(V, 600))
            if i not in avoid: s.append(i)
        seqs.append(s)
    data = hdr + "".join("\t" + " ".join(map(str, s)) + "\n" for s in seqs)
    out = subprocess.run(["/work/wt-tok/bin/icl-tok", "decode", "-t", tk], input=data.encode(), capture_output=True, check=True).stdout.decode().split("\n")
    bad = 0
    for s, line in zip(seqs, out):
        ours = json.loads(line)["text"]
        ref = t.decode(s, skip_special_tokens=False)
        if ours != ref:
            bad += 1
            if bad <= 3: print("  DIFF", tk, s, repr(ours), repr(ref))
    print(tk, len(seqs), "decodes", len(seqs) - bad, "identical")
