#!/usr/bin/env python3
"""report.py OUT_DIR [NAME=VALUE...] - the demo's markdown report on stdout.

Only formats what the icl programs wrote under OUT_DIR (icl-eval summaries,
eos counts from icl-gen --ids, icl-train metrics, icl-gen completions); it
computes nothing but ratios and sums of counts.  Standard library only.
"""
import json
import os
import sys

out = sys.argv[1]
params = dict(a.split("=", 1) for a in sys.argv[2:])


def load(name):
    with open(os.path.join(out, name), encoding="utf-8") as f:
        return json.loads(f.readline())


def lines(name):
    with open(os.path.join(out, name), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip() and not line.startswith("#")]


def count(name):
    with open(os.path.join(out, name), encoding="utf-8") as f:
        return sum(1 for line in f if line.strip() and not line.startswith("#"))


def pct(x):
    return "%.1f%%" % (100.0 * x)


M = ("base", "tuned")
ppl_a = {m: load("%s.ppl.alpaca.json" % m) for m in M}
ppl_c = {m: load("%s.ppl.cls.json" % m) for m in M}
ppl_p = {m: load("%s.ppl.prompts.json" % m) for m in M}
eos_a = {m: load("%s.eos.alpaca.json" % m) for m in M}
eos_c = {m: load("%s.eos.cls.json" % m) for m in M}
ev_a = {m: load("%s.eval.alpaca.json" % m) for m in M}
acc = {(m, t): load("%s.eval.%s.json" % (m, t)) for m in M for t in ("amazon", "agnews")}
maj = {t: load("majority.%s.json" % t) for t in ("amazon", "agnews")}


def both_acc(get):
    c = sum(get(t)["correct"] for t in ("amazon", "agnews"))
    n = sum(get(t)["records"] for t in ("amazon", "agnews"))
    return c, n


def last_metric(name, key):
    v = None
    for r in lines(name):
        if key in r:
            v = r[key]
    return v


def first_metric(name, key):
    for r in lines(name):
        if key in r:
            return r[key]
    return None


p = print
p("# icl demo: what instruction tuning is for")
p()
p("A Llama-family model (%s layers, hidden %s, %s heads, FFN %s, vocabulary %s) "
  "is pre-trained from random weights on C4 web text for %s steps (**base**), "
  "then instruction-tuned for %s epochs on Alpaca instructions, role-play prompts and two "
  "classification tasks phrased as instructions (**tuned**). Both are scored on "
  "the same held-out prompts, never seen in training or tokenizer training."
  % (params.get("LAYERS"), params.get("HIDDEN"), params.get("HEADS"), params.get("FFN"),
     params.get("VOCAB"), params.get("PT_STEPS"), params.get("SFT_EPOCHS")))
p()
p("Made by `make -C examples` (`make demo` at the top level) with: `%s`."
  % " ".join("%s=%s" % kv for kv in params.items()))
p()
p("## Data")
p()
p("| split | Alpaca (JSON) | role-play prompts (CSV) | Amazon polarity (JSONL) | AG News topic (JSONL) |")
p("|---|---|---|---|---|")
p("| train | %d | %d | %d | %d |" % (count("alpaca.train.jsonl"), count("prompts.train.jsonl"), count("amazon.train.jsonl"), count("agnews.train.jsonl")))
p("| validation | %d | - | - | - |" % count("alpaca.valid.jsonl"))
p("| test | %d | %d | %d | %d |" % (count("alpaca.test.jsonl"), count("prompts.test.jsonl"), count("amazon.test.jsonl"), count("agnews.test.jsonl")))
p()
p("Pre-training: %d token lines of C4 text (chunks of at most %d ids); "
  "instruction tuning: %d records (the classification records %s times)."
  % (count("pt.tok"), int(params.get("SEQ", "256")) - 1, count("sft.jsonl"), params.get("CLS_REPEAT")))
p()
p("## Before and after instruction tuning (held-out test prompts)")
p()
p("| metric | base (pre-trained only) | tuned | majority-class baseline |")
p("|---|---|---|---|")
p("| Alpaca response perplexity (%d responses, %d tokens) | %.1f | **%.1f** | |"
  % (ppl_a["base"]["records"], ppl_a["base"]["tokens"], ppl_a["base"]["perplexity"], ppl_a["tuned"]["perplexity"]))
p("| role-play prompt perplexity (CSV source; %d responses, %d tokens) | %.1f | **%.1f** | |"
  % (ppl_p["base"]["records"], ppl_p["base"]["tokens"], ppl_p["base"]["perplexity"], ppl_p["tuned"]["perplexity"]))
p("| classification label perplexity (%d labels, %d tokens) | %.1f | **%.2f** | |"
  % (ppl_c["base"]["records"], ppl_c["base"]["tokens"], ppl_c["base"]["perplexity"], ppl_c["tuned"]["perplexity"]))
p("| Alpaca generations ending in EOS (at most %s new tokens) | %d/%d (%s) | **%d/%d (%s)** | |"
  % (params.get("GEN_TOKENS"), eos_a["base"]["eos"], eos_a["base"]["prompts"], pct(eos_a["base"]["eos_rate"]),
     eos_a["tuned"]["eos"], eos_a["tuned"]["prompts"], pct(eos_a["tuned"]["eos_rate"])))
p("| classification generations ending in EOS (at most %s new tokens) | %d/%d (%s) | **%d/%d (%s)** | |"
  % (params.get("CLS_TOKENS"), eos_c["base"]["eos"], eos_c["base"]["prompts"], pct(eos_c["base"]["eos_rate"]),
     eos_c["tuned"]["eos"], eos_c["tuned"]["prompts"], pct(eos_c["tuned"]["eos_rate"])))
p("| mean new tokens per Alpaca answer | %.1f | %.1f | |"
  % (eos_a["base"]["mean_new_tokens"], eos_a["tuned"]["mean_new_tokens"]))
for t, name in (("amazon", "Amazon review polarity"), ("agnews", "AG News topic")):
    p("| %s accuracy (%d) | %s | **%s** | %s |"
      % (name, acc[("tuned", t)]["records"], pct(acc[("base", t)]["accuracy"]),
         pct(acc[("tuned", t)]["accuracy"]), pct(maj[t]["accuracy"])))
cb, n = both_acc(lambda t: acc[("base", t)])
ct, _ = both_acc(lambda t: acc[("tuned", t)])
cm, _ = both_acc(lambda t: maj[t])
p("| both classification tasks, accuracy (%d) | %s | **%s** | %s |" % (n, pct(cb / n), pct(ct / n), pct(cm / n)))
p("| Alpaca ROUGE-L F / token F1 | %.3f / %.3f | %.3f / %.3f | |"
  % (ev_a["base"]["rougeL"], ev_a["base"]["f1"], ev_a["tuned"]["rougeL"], ev_a["tuned"]["f1"]))
p()
checks = [
    ("response perplexity lower after tuning", ppl_a["tuned"]["perplexity"] < ppl_a["base"]["perplexity"]),
    ("stops by itself (EOS) more often after tuning", eos_a["tuned"]["eos"] > eos_a["base"]["eos"]),
    ("classification accuracy above the majority-class baseline", ct > cm),
]
for what, ok in checks:
    p("- %s: **%s**" % (what, "yes" if ok else "NO"))
p()
p("Perplexity is exp(mean loss per target token) over the whole file (response "
  "tokens and their EOS only); accuracy compares the first line of the greedy "
  "completion with the label after SQuAD normalisation (icl-eval(1)); the "
  "majority baseline answers every test record with its task's most frequent "
  "training label. Confusion matrices: `%s/tuned.eval.amazon.json`, "
  "`%s/tuned.eval.agnews.json`." % (out, out))
p()
p("## Loss curves")
p()
p("![loss curves](loss.png)")
p()
pl0, pl1 = first_metric("base.metrics.jsonl", "loss"), last_metric("base.metrics.jsonl", "loss")
sl0, sl1 = first_metric("tuned.metrics.jsonl", "loss"), last_metric("tuned.metrics.jsonl", "loss")
v0, v1 = last_metric("base.metrics.jsonl", "val_loss"), last_metric("tuned.metrics.jsonl", "val_loss")
p("Pre-training loss %.3f -> %.3f; instruction-tuning loss %.3f -> %.3f; "
  "validation loss on held-out Alpaca responses %.3f after pre-training, %.3f after tuning."
  % (pl0, pl1, sl0, sl1, v0, v1))
p()
p("## Sample completions (greedy, held-out prompts)")
p()


def instruction(prompt):
    s = prompt.split("### Instruction:\n", 1)[-1]
    return s.split("\n\n### Response:", 1)[0].split("\n\n### Input:", 1)[0].strip()


def show(s, n=300):
    s = s.strip()
    if len(s) > n:
        s = s[:n] + " ..."
    return "> " + s.replace("\n", "\n> ") if s else "> (empty)"


gens = {m: lines("%s.gen.alpaca.jsonl" % m) for m in M}
for i in range(min(3, len(gens["base"]))):
    r = gens["base"][i]
    p("**Instruction:** %s" % instruction(r["prompt"]).replace("\n", " "))
    p()
    p("base:")
    p()
    p(show(r["completion"]))
    p()
    p("tuned:")
    p()
    p(show(gens["tuned"][i]["completion"]))
    p()
    p("reference:")
    p()
    p(show(r["response"]))
    p()
cls = {m: lines("%s.gen.cls.jsonl" % m) for m in M}
p("Classification (first %d test records of each task):" % 3)
p()
p("| text (start) | label | base | tuned |")
p("|---|---|---|---|")
seen = {}
for i, r in enumerate(cls["base"]):
    task = "amazon" if "positive or negative" in r["prompt"] else "agnews"
    seen[task] = seen.get(task, 0) + 1
    if seen[task] > 3:
        continue
    text = instruction(r["prompt"]).replace("\n", " ").replace("|", "/")[:70]

    def cell(s):
        s = s.split("\n", 1)[0].strip().replace("|", "/")
        return s[:40] if s else "(empty)"

    p("| %s ... | %s | %s | %s |" % (text, r["response"], cell(r["completion"]), cell(cls["tuned"][i]["completion"])))
