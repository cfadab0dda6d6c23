#!/usr/bin/env python3
"""icl_table.py OUT_DIR [NAME=VALUE...] - the in-context-learning table
(examples/ICL.md, `make -C examples icl`) on stdout.

Formats what the icl programs wrote under OUT_DIR/icl: icl-eval accuracy
summaries of the greedy completions of k-shot prompts (icl-fmt --shots),
their mean prompt length in tokens (icl-tok), the shots each prompt kept
(icl-fmt's "shots"), GNU time's wall and CPU time and peak RSS of each
icl-gen run (OUT_DIR/time/icl.*) and the load average around it
(OUT_DIR/icl/RUN.load).  NAME=VALUE: the Makefile's knobs, COMMIT (and
DIRTY, non-empty when the tree had uncommitted changes).  Standard library
only.
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


def shots(run):
    """(mean, min) number of shots a run's prompts hold (their "shots" lists:
    icl-fmt --max-prompt-tokens may have dropped some)."""
    n = []
    with open(os.path.join(I, run + ".chat.jsonl"), encoding="utf-8") as f:
        for x in f:
            if x.strip():
                n.append(len(json.loads(x).get("shots", [])))
    return sum(n) / max(len(n), 1), min(n) if n else 0


def load_avg(run):
    """The 1-minute load averages before and after a run (RUN.load: two
    lines of /proc/loadavg), or None."""
    try:
        with open(os.path.join(I, run + ".load"), encoding="utf-8") as f:
            v = [float(x.split()[0]) for x in f if x.strip()]
    except (OSError, ValueError, IndexError):
        return None
    return v or None


def done(run):
    """Has a run been scored (its icl-eval summary, token count and time
    exist)?"""
    return all(os.path.exists(x) for x in (os.path.join(I, run + ".gen.acc.json"),
                                            os.path.join(I, run + ".ptok"),
                                            os.path.join(out, "time", "icl." + run)))


def runs():
    r = [("0-shot (untuned)", "zero", 0)]
    for s in P["ICL_SELECT"].split():
        for k in P["ICL_SHOTS"].split():
            r.append(("%s %s-shot" % (s, k), "%s%s" % (s, k), int(k)))
    r.append(("LoRA-tuned, 0-shot", "tuned", 0))
    return r


def majority(t):
    """The majority label of task t's training split and its share of the
    first ICL_TEST held-out records."""
    zero = labels(t + ".zero")
    maj = load(os.path.join(out, "majority.%s.json" % t))
    mlabel = None
    for gold, preds in maj["confusion"].items():
        for pred in preds:
            mlabel = pred
    return mlabel, sum(1 for x in zero if x.lower() == (mlabel or "").lower()), len(zero)


def pct(a):
    return "%.0f%%" % (100.0 * a["accuracy"])


commit = P.get("COMMIT") or "unknown"
if P.get("DIRTY"):
    commit += " (with uncommitted changes)"
loads = [v for t, _ in TASKS for _, r, _ in runs() for v in (load_avg("%s.%s" % (t, r)) or [])]
missing = ["%s.%s" % (t, r) for t, _ in TASKS for _, r, _ in runs() if not done("%s.%s" % (t, r))]
print("# In-context learning against LoRA: k-shot prompts on SmolLM2-135M-Instruct\n")
if missing:
    print("**Incomplete**: %d of %d runs had not finished when this table was written "
          "(%s: \"not run\" below); `make -C examples icl` makes the rest and the "
          "whole table.\n" % (len(missing), 2 * len(runs()), ", ".join(missing)))
print("Made by `make -C examples icl` (`make demo-icl` at the top level) after the demo, "
      "on the first %s held-out records of each task (the demo's held-out sets); "
      "table written at commit %s." % (P["ICL_TEST"], commit))
print()
print("| task | 0-shot | %s | LoRA-tuned | majority class |"
      % " | ".join("%s %s" % (s, k) for s in P["ICL_SELECT"].split() for k in P["ICL_SHOTS"].split()))
print("|---|---|%s---|---|" % ("---|" * (len(runs()) - 2)))
for t, name in TASKS:
    cells = [pct(load(os.path.join(I, "%s.%s.gen.acc.json" % (t, r)))) if done("%s.%s" % (t, r)) else "not run"
             for _, r, _ in runs()]
    ml, mc, mn = majority(t)
    print("| %s | %s | **%s** | %.0f%% (\"%s\") |" % (name, " | ".join(cells[:-1]), cells[-1], 100.0 * mc / mn, ml))
print()
print("Exact label accuracy (%%) of greedy completions. **0-shot** is the untuned model on the "
      "demo's prompts; **random K** and **similar K** put K solved training records before "
      "each prompt as earlier user/assistant turns of the chat template (`icl-fmt "
      "--chat-template MODEL --shots K --shots-from TRAIN --shot-selection random "
      "--balance-labels` or `similar`: BM25 over the instruction, best first), within a "
      "budget of %s prompt tokens (`--max-prompt-tokens`: shots dropped from the end; the "
      "**shots used** column says how many the prompts kept); **LoRA-tuned** is the "
      "demo's adapter on the 0-shot prompts. The k-shot prompts are the conversations "
      "transformers' apply_chat_template renders (`check_icl_prompts.py MODEL out`, with transformers, "
      "compares every one). At most %s new tokens, scored by `icl-eval -M "
      "accuracy` (first line of the completion against the label, SQuAD-normalised)."
      % (P.get("ICL_MAX_PROMPT", "no"), P["CLS_TOKENS"]))
print()
print("Costs: **prompt tokens** is the mean length of the rendered prompt (system prompt, "
      "shots and query) in the model's tokens. Times are GNU time's for the whole icl-gen "
      "run (model load included) over the %s prompts, %s, batches of %s. The machine was "
      "shared while these ran (1-minute load average %s on its 2 cores): the **wall** time "
      "grows with the load, so read the **CPU** time (user + system seconds of the run), "
      "which grows with it much less, as the cost."
      % (P["ICL_TEST"], "%s thread(s)" % P["THREADS"] if P.get("THREADS") else "all cores",
         P.get("GEN_BATCH", "8"),
         "%.1f-%.1f" % (min(loads), max(loads)) if loads else "not recorded"))
print()
for t, name in TASKS:
    ml, mc, mn = majority(t)
    print("## %s\n" % name)
    print("Majority class of the training split (\"%s\") on these %d records: %.1f%%.\n"
          % (ml, mn, 100.0 * mc / mn))
    print("| prompt | accuracy | shots used (mean, min) | mean prompt tokens | CPU time (s) | CPU s per prompt "
          "| wall time (s) | load before/after | peak RSS (MB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, r, k in runs():
        run = "%s.%s" % (t, r)
        if not done(run):
            print("| %s | not run | | | | | | | |" % label)
            continue
        a = load(os.path.join(I, run + ".gen.acc.json"))
        with open(os.path.join(I, run + ".ptok"), encoding="utf-8") as f:
            ptok = float(f.read().split()[0])
        w, rss, cpu = timed(run)
        mean, least = shots(run)
        la = load_avg(run)
        n = max(a["records"], 1)
        print("| %s | %d/%d (%.1f%%) | %s | %.0f | %s | %s | %.1f | %s | %.0f |"
              % (label, a["correct"], a["records"], 100.0 * a["accuracy"],
                 "%.2f, %d" % (mean, least) if k else "-", ptok,
                 "%.1f" % cpu if cpu is not None else "-", "%.2f" % (cpu / n) if cpu is not None else "-",
                 w, "/".join("%.1f" % x for x in la) if la else "-", rss / 1024.0))
    print()
