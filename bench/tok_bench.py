"""Driver of bench/tok.sh: icl-tok encode vs tiktoken and spm_encode.

Text: the lines of tests/data/tok/corpus.txt (tiny Shakespeare + Wikipedia,
2.1 MB), blank lines dropped, four times over (8.4 MB, so that loading the
tokenizer, reported apart, does not dominate).  icl-tok reads them as {"text": line} records
and writes token lines (JSON parsing and output included in its time);
tiktoken encodes the same strings (encode_ordinary per line for 1 thread,
encode_ordinary_batch for all threads); spm_encode reads the plain lines.
Each is run 3 times, the runs of the peers interleaved (the machine is
shared, so load shifts hit both alike), and the best time kept.  MB/s = text bytes / seconds.
"""
import json, os, subprocess, sys, time

out, spm_model = sys.argv[1], sys.argv[2]
import tiktoken

lines = [l for l in open(os.path.join(out, "corpus.txt"), encoding="utf-8").read().split("\n") if l.strip()] * 4
nbytes = sum(len(l.encode()) for l in lines)
with open(os.path.join(out, "corpus.jsonl"), "w", encoding="utf-8") as f:
    for l in lines:
        f.write(json.dumps({"text": l}, ensure_ascii=False) + "\n")
with open(os.path.join(out, "lines.txt"), "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
ncpu = os.cpu_count() or 1


def best_of(fns, n=3):
    """Run each of fns n times, interleaved; return [(best time, result)]."""
    t = [[] for _ in fns]
    r = [None] * len(fns)
    for _ in range(n):
        for k, fn in enumerate(fns):
            t0 = time.perf_counter()
            r[k] = fn()
            t[k].append(time.perf_counter() - t0)
    return [(min(x), y) for x, y in zip(t, r)]


def best(fn, n=3):
    return best_of([fn], n)[0]


def icl(tok, threads):
    return subprocess.run(["bin/icl-tok", "encode", "-t", tok, "--no-eos", "--threads", str(threads),
                           os.path.join(out, "corpus.jsonl")], check=True, capture_output=True).stdout


# tiktoken's "gpt2" encoding, built from the same vocabulary (its ranks are
# GPT-2's ids; building it from encoder.json is what tiktoken does when it
# downloads them, which these machines cannot).
gj = json.load(open(os.path.join(out, "gpt2.json"), encoding="utf-8"))
bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
cs = bs[:]
n = 0
for b in range(256):
    if b not in bs:
        bs.append(b); cs.append(256 + n); n += 1
dec = {chr(c): b for b, c in zip(bs, cs)}
ranks = {bytes(dec[ch] for ch in t): i for t, i in gj["model"]["vocab"].items()}
enc = tiktoken.Encoding("gpt2-local",
                        pat_str=r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
                        mergeable_ranks=ranks, special_tokens={"<|endoftext|>": 50256})

mb = nbytes / 1e6
load = os.getloadavg()[0]
print(f"bench-tok: {len(lines)} lines, {mb:.2f} MB of text; {ncpu} CPUs; load average {load:.1f} at start; tiktoken {tiktoken.__version__} (PyPI)")
gpt2 = os.path.join(out, "gpt2.json")
from concurrent.futures import ThreadPoolExecutor
pool = ThreadPoolExecutor(ncpu)
step = (len(lines) + 8 * ncpu - 1) // (8 * ncpu)
chunks = [lines[i:i + step] for i in range(0, len(lines), step)]


def tt_chunked():
    """tiktoken on ncpu threads, 8 chunks of lines per thread (its Rust core
    releases the GIL); encode_ordinary_batch's one task per line is slower."""
    return [ids for part in pool.map(lambda c: [enc.encode_ordinary(l) for l in c], chunks) for ids in part]


(t_icl1, o1), (t_tt1, ids1), (t_iclN, oN), (t_ttN, idsN), (t_ttB, _) = best_of([
    lambda: icl(gpt2, 1),
    lambda: [enc.encode_ordinary(l) for l in lines],
    lambda: icl(gpt2, ncpu),
    tt_chunked,
    lambda: enc.encode_ordinary_batch(lines, num_threads=ncpu)])
t_ttN = min(t_ttN, t_ttB)
t_load, _ = best(lambda: subprocess.run(["bin/icl-tok", "encode", "-t", gpt2], input=b"", check=True,
                                        capture_output=True))
ours = [[int(x) for x in l.split("\t")[1].split()] for l in o1.decode().split("\n")[1:] if l]
same = sum(a == b for a, b in zip(ours, ids1))
assert o1 == oN, "icl-tok output depends on --threads"
print(f"  ids: icl-tok and tiktoken agree on {same} of {len(lines)} lines")
print(f"  {'GPT-2 encode':<28}{'icl-tok MB/s':>14}{'tiktoken MB/s':>15}{'ratio':>8}")
print(f"  {'1 thread':<28}{mb / t_icl1:>14.2f}{mb / t_tt1:>15.2f}{t_tt1 / t_icl1:>8.2f}")
print(f"  {f'{ncpu} threads':<28}{mb / t_iclN:>14.2f}{mb / t_ttN:>15.2f}{t_ttN / t_iclN:>8.2f}")
print(f"  (icl-tok times include loading gpt2.json, {t_load:.3f} s, and JSON in/out; ratio > 1: icl-tok faster;")
print(f"   tiktoken {ncpu} threads: the better of encode_ordinary_batch and a thread pool over chunks)")

if os.path.exists(spm_model) and subprocess.run(["sh", "-c", "command -v spm_encode"], capture_output=True).returncode == 0:
    llama = os.path.join(out, "llama2.json")
    (t_l1, lo), (t_spm, so) = best_of([
        lambda: icl(llama, 1),
        lambda: subprocess.run(["spm_encode", "--model=" + spm_model, "--output_format=id",
                                "--input=" + os.path.join(out, "lines.txt")],
                               check=True, capture_output=True).stdout])
    a = [l.split("\t")[1] for l in lo.decode().split("\n")[1:] if l]
    b = [l for l in so.decode().split("\n") if l]
    same = sum(x == y for x, y in zip(a, b))
    print(f"  ids: icl-tok (llama2.json) and spm_encode agree on {same} of {len(lines)} lines")
    print(f"  {'Llama 2 encode, 1 thread':<28}{'icl-tok MB/s':>14}{'spm_encode MB/s':>17}{'ratio':>8}")
    print(f"  {'':<28}{mb / t_l1:>14.2f}{mb / t_spm:>17.2f}{t_spm / t_l1:>8.2f}")
else:
    print(f"  spm_encode or {spm_model} missing: sentencepiece comparison skipped")
