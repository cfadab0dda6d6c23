#!/usr/bin/env python3
"""icl_table.py OUT_DIR [NAME=VALUE...] - the in-context-learning table
(examples/ICL.md, `make -C examples icl`) on stdout.

Formats what the icl programs wrote under OUT_DIR/icl: icl-eval accuracy
summaries of the greedy completions of k-shot prompts (icl-fmt --shots),
their mean prompt length in tokens (icl-tok) and GNU time's wall time and
peak RSS of each icl-gen run (OUT_DIR/time/icl.*).  Standard library only.
"""
import json
import os
import sys

out = sys.argv[1]
P = dict(a.split("=", 1) for a in sys.argv[2:])
I = os.path.join(out, "icl")
TASKS = (("amazon", "review polarity (Amazon)"), ("agnews", "news topic (AG News)"))


def load(p):
    with open(p, encoding="utf-8") as f:
        return json.loads(f.readline())


def timed(run):
    with open(os.path.join(out, "time", "icl." + run), encoding="utf-8") as f:
        v = [x for x in f.read().split("\n") if x.strip()][-1].split()
    cpu = float(v[2]) + float(v[3]) if len(v) >= 4 else None
    return float(v[0]), int(v[1]), cpu


def labels(run):
    with open(os.path.join(I, run + ".gen.jsonl"), encoding="utf-8") as f:
        return [json.loads(x)["label"] for x in f if x.strip()]


print("# In-context learning against LoRA: k-shot prompts on SmolLM2-135M-Instruct\n")
print("Made by `make -C examples icl` (`make demo-icl` at the top level) after the demo, "
      "on the first %s held-out records of each task (the demo's held-out sets). "
      "**0-shot** is the untuned model on the demo's prompts; **random K** and "
      "**similar K** put K solved training records before each prompt as earlier "
      "user/assistant turns of the chat template (`icl-fmt --chat-template MODEL --shots K "
      "--shots-from TRAIN --shot-selection random --balance-labels` or `similar`: BM25 over "
      "the instruction, best first); **LoRA-tuned** is the demo's adapter on the 0-shot "
      "prompts. All greedy, at most %s new tokens, scored by `icl-eval -M accuracy` "
      "(first line of the completion against the label)." % (P["ICL_TEST"], P["CLS_TOKENS"]))
print()
print("Prompt tokens: mean length of the rendered prompt (system prompt, shots and "
      "query) in the model's tokens. Wall time: the whole icl-gen run (model load "
      "included) for the %s prompts, %s, batches of %s; it grows with the "
      "machine's load, the CPU time (user + system) much less."
      % (P["ICL_TEST"], "%s thread(s)" % P["THREADS"] if P.get("THREADS") else "all cores",
         P.get("GEN_BATCH", "8")))
print()
for t, name in TASKS:
    zero = labels(t + ".zero")
    maj = load(os.path.join(out, "majority.%s.json" % t))
    mlabel = None
    for gold, preds in maj["confusion"].items():
        for pred in preds:
            mlabel = pred
    mfrac = sum(1 for x in zero if x.lower() == (mlabel or "").lower()) / len(zero)
    print("## %s\n" % name)
    print("Majority class of the training split (\"%s\") on these %d records: %.1f%%.\n"
          % (mlabel, len(zero), 100.0 * mfrac))
    print("| prompt | accuracy | mean prompt tokens | wall time (s) | s per prompt | CPU time (s) | peak RSS (MB) |")
    print("|---|---|---|---|---|---|---|")
    runs = [("0-shot (untuned)", "zero")]
    for s in P["ICL_SELECT"].split():
        for k in P["ICL_SHOTS"].split():
            runs.append(("%s %s-shot" % (s, k), "%s%s" % (s, k)))
    runs.append(("LoRA-tuned, 0-shot", "tuned"))
    for label, r in runs:
        run = "%s.%s" % (t, r)
        a = load(os.path.join(I, run + ".gen.acc.json"))
        with open(os.path.join(I, run + ".ptok"), encoding="utf-8") as f:
            ptok = float(f.read().split()[0])
        w, rss, cpu = timed(run)
        print("| %s | %d/%d (%.1f%%) | %.0f | %.1f | %.2f | %s | %.0f |"
              % (label, a["correct"], a["records"], 100.0 * a["accuracy"], ptok, w,
                 w / max(a["records"], 1), "%.1f" % cpu if cpu is not None else "-", rss / 1024.0))
    print()
