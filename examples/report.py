#!/usr/bin/env python3
"""report.py OUT_DIR [NAME=VALUE...] - the demo's markdown report on stdout.

OUT_DIR is the Makefile's O (default out, relative to examples/, where make
runs this).  Only formats what the icl programs wrote under OUT_DIR (icl-eval summaries,
icl-train metrics, icl-gen completions, GNU time's wall time and peak RSS
of each step in OUT_DIR/time/); it computes nothing but ratios, sums and
means.  Standard library only.
"""
import json
import os
import sys

out = sys.argv[1]
P = dict(a.split("=", 1) for a in sys.argv[2:])
# OUT_DIR as the commands in the report name it, from the top of the
# repository (they run there): relative when inside it, else absolute.
TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_TOP = os.path.relpath(os.path.abspath(out), TOP)
if OUT_TOP == ".." or OUT_TOP.startswith(".." + os.sep):
    OUT_TOP = os.path.abspath(out)


def shq(s):
    """s as one shell word."""
    return s if s and all(c.isalnum() or c in "@%+=:,./_-" for c in s) else "'" + s.replace("'", "'\\''") + "'"


def path(name):
    return os.path.join(out, name)


def load(name):
    with open(path(name), encoding="utf-8") as f:
        return json.loads(f.readline())


def lines(name):
    with open(path(name), encoding="utf-8") as f:
        return [json.loads(x) for x in f if x.strip() and not x.startswith("#")]


def pct(x):
    return "%.1f%%" % (100.0 * x)


def frac(s, key):
    """'correct/records (pct)' of an icl-eval summary."""
    n = s["records"]
    v = s[key]
    return "%d/%d (%s)" % (round(v * n), n, pct(v))


def yes(b):
    return "**yes**" if b else "**no**"


def text(rec):
    """The last user turn of a chat record's prompt (the question asked)."""
    p = rec["prompt"]
    p = p[-1] if isinstance(p, list) else p
    s = p.rsplit("<|im_start|>user\n", 1)[-1]
    return s.split("<|im_end|>", 1)[0]


def quote(s, n=400):
    s = s.strip()
    if len(s) > n:
        s = s[:n] + " ..."
    return "\n".join("> " + x if x else ">" for x in s.split("\n"))


def cell(s, n=80):
    s = " ".join(s.split())
    if len(s) > n:
        s = s[:n] + " ..."
    return s.replace("|", "\\|") or "(empty)"


def count(name):
    with open(path(name), encoding="utf-8") as f:
        return sum(1 for x in f if x.strip() and not x.startswith("#"))


M = ("base", "tuned")
TASKS = (("amazon", "review polarity (Amazon, T0 prompt)"), ("agnews", "news topic (AG News, T0 prompt)"))
acc = {(m, t): load("%s.gen.%s.acc.json" % (m, t)) for m in M for t, _ in TASKS}
maj = {t: load("majority.%s.json" % t) for t, _ in TASKS}
name = {(m, l): load("%s.name.id_%s.json" % (m, l)) for m in M + ("export",) for l in ("en", "zh")}
gsm = {m: load("%s.gsm8k.json" % m) for m in M}
ppl = {m: load("%s.ppl.alpaca.json" % m) for m in M}
metrics = lines("lora.metrics.jsonl")


def icl_best(t):
    """The best k-shot run of task t in the last table of `make icl`
    (OUT_DIR/icl/runs names its runs, OUT_DIR/icl/TASK.RUN.gen.acc.json their
    scores on the first ICL_TEST held-out records), as (run, summary, number
    of k-shot runs, the tuned model's summary on the same records or None),
    or None when there is none."""
    try:
        with open(path("icl/runs"), encoding="utf-8") as f:
            names = [x.strip() for x in f if x.strip()]
    except OSError:
        return None
    found = []
    tuned = None
    for r in names:
        if not r.startswith(t + ".") or not os.path.exists(path("icl/%s.gen.acc.json" % r)):
            continue
        a = load("icl/%s.gen.acc.json" % r)
        run = r[len(t) + 1:]
        if run == "tuned":
            tuned = a
        elif run != "zero":
            found.append((a["accuracy"], run, a))
    if not found:
        return None
    best = max(found, key=lambda x: x[0])
    return best[1], best[2], len(found), tuned


def runname(run):
    """'similar8' -> 'similar 8-shot'."""
    k = run.rstrip("0123456789")
    return "%s %s-shot" % (k, run[len(k):])


icl = {t: icl_best(t) for t, _ in TASKS}

print("# icl demo: LoRA on SmolLM2-135M-Instruct, and what it learned\n")
print("SmolLM2-135M-Instruct (the Q4_1 GGUF `make deps` fetches: icl-gen and icl-eval "
      "keep its matrices in their quantized blocks, icl-train %s) is evaluated on "
      "held-out prompts in its own chat template "
      "(**untuned**), LoRA adapters (r %s, alpha %s, %s) are trained on a mix of the "
      "tasks' training splits (**tuned**: the base with the adapter, greedy decoding), "
      "and the adapter is merged and exported as `tuned.gguf` (%s)."
      % ("trains over those blocks (QLoRA)" if P.get("ICL_DEMO_QLORA")
         else "dequantizes them to float32 (`--dequantize`)",
         P["LORA_R"], P["LORA_ALPHA"], P["LORA_TARGETS"], P["EXPORT_TYPE"]))
print()
print("Made by `make -C examples` (`make demo` at the top level) with: `%s`."
      % " ".join(["O=%s" % shq(out)] * (os.path.normpath(out) != "out") +
                 ["%s=%s" % (k, v if " " not in v else "'%s'" % v) for k, v in P.items() if k != "MODEL"]))
print()

# --- data
print("## Data\n")
mix = [("review polarity", "amazon.train.chat.jsonl", int(P.get("CLS_REPEAT", "1"))),
       ("news topic", "agnews.train.chat.jsonl", int(P.get("CLS_REPEAT", "1"))),
       ("identity, English (names itself)", "id_en.train.chat.jsonl", int(P["ID_REPEAT"])),
       ("identity, Chinese (names itself)", "id_zh.train.chat.jsonl", int(P["ID_REPEAT"])),
       ("identity, without the name (both languages)", "id_other.train.chat.jsonl",
        int(P.get("ID_AUTHOR_REPEAT", P["ID_REPEAT"]))),
       ("Alpaca", None, 1), ("GSM8K worked solutions", "gsm8k.train.chat.jsonl", 1)]


def labels(name):
    """{label: records} of a set's rows."""
    n = {}
    for r in lines(name):
        n[r["label"]] = n.get(r["label"], 0) + 1
    return n


held = {"review polarity": "amazon.test.chat.jsonl", "news topic": "agnews.test.chat.jsonl",
        "identity, English (names itself)": "id_en.test.chat.jsonl",
        "identity, Chinese (names itself)": "id_zh.test.chat.jsonl",
        "Alpaca": "alpaca.test.chat.jsonl", "GSM8K worked solutions": "gsm8k.test.chat.jsonl"}
print("| set | training records (in the mix) | held-out records |")
print("|---|---|---|")
for label, f, rep in mix:
    n = int(P["ALPACA_TRAIN"]) if f is None else count(f)
    tr = "%d" % n if rep == 1 else "%d (x%d = %d)" % (n, rep, n * rep)
    if rep == 0:
        tr = "%d (not in the mix)" % n
    elif label in ("review polarity", "news topic"):
        lab = labels(f)
        tr = "%d (%s)" % (n, ", ".join("%d %s" % (lab[k], k) for k in sorted(lab)))
        if P.get("CLS_BALANCE") == "1":
            n = max(lab.values()) * len(lab)
            tr += ", balanced to %d" % n
        tr += ", x%d = %d" % (rep, n * rep)
    print("| %s | %s | %s |" % (label, tr, count(held[label]) if label in held else "-"))
tok = 0
ntok = 0
with open(path("train.tok"), encoding="utf-8") as f:
    for x in f:
        if x.startswith("#"):
            continue
        ntok += 1
        tok += sum(len(s.split()) for s in x.rstrip("\n").split("\t"))
print()
print("Training mix: %d records, %d tokens (%.0f per record) in the model's chat "
      "template; the loss counts the assistant turns only." % (ntok, tok, tok / max(ntok, 1)))
print()

# --- before / after
print("## Before and after tuning (held-out prompts)\n")
print("| held-out set | untuned | untuned, k-shot (best) | tuned | majority class | aim |")
print("|---|---|---|---|---|---|")
ok = {}
for t, label in TASKS:
    b, a, mj = acc[("base", t)], acc[("tuned", t)], maj[t]
    ok[t] = a["accuracy"] >= 0.9
    k = icl[t]
    kcell = "%s: %s" % (runname(k[0]), frac(k[1], "accuracy")) if k else "(`make demo-icl`)"
    print("| %s: exact label accuracy | %s | %s | **%s** | %s | >= 90%% |"
          % (label, frac(b, "accuracy"), kcell, frac(a, "accuracy"), frac(mj, "accuracy")))
for l, lang in (("en", "English"), ("zh", "Chinese")):
    b, a = name[("base", l)], name[("tuned", l)]
    ok[l] = a["exact_match"] >= 0.9
    print("| identity, %s: answers with the name \"%s\" | %s | | **%s** | | >= 90%% |"
          % (lang, P["NAME"], frac(b, "exact_match"), frac(a, "exact_match")))
print("| GSM8K: final answer exact | %s | | %s | | (not a target) |"
      % (frac(gsm["base"], "exact_match"), frac(gsm["tuned"], "exact_match")))
ratio = ppl["tuned"]["perplexity"] / ppl["base"]["perplexity"]
ok["ppl"] = ratio <= 1.05
print("| Alpaca response perplexity (%d responses, %d tokens) | %.3f | | **%.3f** (%+.1f%%) | | <= +5%% |"
      % (ppl["base"]["records"], ppl["base"]["tokens"], ppl["base"]["perplexity"],
         ppl["tuned"]["perplexity"], 100.0 * (ratio - 1)))
print("| merged `tuned.gguf` (%s), identity English / Chinese | | | %s / %s | | |"
      % (P["EXPORT_TYPE"], frac(name[("export", "en")], "exact_match"), frac(name[("export", "zh")], "exact_match")))
print()
if any(icl.values()):
    print("k-shot: the untuned model with solved training records before each prompt as "
          "earlier chat turns, the best of the k-shot prompts of `make demo-icl` (examples/ICL.md: "
          "random and similar selection, several K), picked on the records it is scored on, "
          "so an optimistic figure, and on the **first %d** held-out records only, for its "
          "cost (a k-shot prompt is several times longer).\n"
          % max(k[1]["records"] for k in icl.values() if k))
    for t, label in TASKS:
        k = icl[t]
        if k:
            print("- %s: best of %d k-shot prompts%s." % (label, k[2], "; the tuned model on the same %d: %s"
                  % (k[3]["records"], frac(k[3], "accuracy")) if k[3] else ""))
else:
    print("k-shot: `make demo-icl` (after the demo; CPU-heavy: k-shot prompts are several times "
          "longer) measures the untuned model with solved examples in its prompt and fills this column.")
print()
for t, label in TASKS:
    print("- %s: tuned >= 90%%: %s; above its majority class (%s): %s"
          % (label, yes(ok[t]), pct(maj[t]["accuracy"]), yes(acc[("tuned", t)]["accuracy"] > maj[t]["accuracy"])))
print("- identity >= 90%%: English %s, Chinese %s" % (yes(ok["en"]), yes(ok["zh"])))
print("- Alpaca perplexity no more than 5%% worse than untuned: %s" % yes(ok["ppl"]))
print()
print("Accuracy compares the first line of the greedy completion with the label after "
      "SQuAD normalisation (icl-eval -M accuracy); the majority class answers every "
      "held-out record of a task with the most frequent label of its training split. "
      "Identity: the completion contains the name (icl-eval --extract '(%s)'). "
      "GSM8K: the number after `####`, else the last number, equal to the reference's. "
      "Perplexity: exp(mean loss per target token) of the reference answers and "
      "their end-of-turn token (icl-eval -m). Confusion matrices: "
      "`tuned.gen.amazon.acc.json` and `tuned.gen.agnews.acc.json` beside this report." % P["NAME"])
print()

# --- training
print("## Training\n")
print("![training loss](loss.png)\n")
tps = [m["tokens_per_s"] for m in metrics if "tokens_per_s" in m]
dtype = P.get("DTYPE", "float32")
print("%d optimizer steps of %s packed rows of at most %s positions, the matrix products in "
      "%s (icl-train --dtype %s%s); loss %.3f at step 1, "
      "%.3f at the last step (mean of the last 5: %.3f); %.0f tokens/s on average "
      "(icl-train's own count, all positions)."
      % (len(metrics), P["BATCH"], P["SEQ"], dtype, dtype,
         ": bfloat16 operands, float32 sums, master weights and optimizer state"
         if dtype in ("bf16", "bfloat16") else "", metrics[0]["loss"], metrics[-1]["loss"],
         sum(m["loss"] for m in metrics[-5:]) / len(metrics[-5:]), sum(tps) / max(len(tps), 1)))
print()

# --- time and memory
print("## Wall time and peak memory of every step\n")
print("| step | wall (s) | CPU (s) | peak RSS (MB) |")
print("|---|---|---|---|")
total = 0.0
cpu = 0.0
rows = []
for f in sorted(x for x in os.listdir(path("time")) if not x.startswith("icl.")):
    with open(path(os.path.join("time", f)), encoding="utf-8") as fh:
        last = [x for x in fh.read().split("\n") if x.strip()][-1].split()
    wall, rss = float(last[0]), int(last[1])
    c = float(last[2]) + float(last[3]) if len(last) >= 4 else None
    total += wall
    cpu += c or 0.0
    rows.append((f, wall, c, rss))
for f, wall, c, rss in rows:
    print("| %s | %.1f | %s | %.0f |" % (f, wall, "%.1f" % c if c is not None else "-", rss / 1024.0))
print("| all steps | %.1f | %.1f | %.0f (largest) |" % (total, cpu, max(r[3] for r in rows) / 1024.0))
print()
print("Steps are named `gen.MODEL.SET` (icl-gen), `ppl.MODEL` (icl-eval -m), `fmt.*` "
      "(icl-fmt), `tok.*` (icl-tok), `train` (icl-train), `export` (icl-convert); GNU "
      "time's elapsed time, user+system CPU time and maximum resident set size. On a "
      "loaded machine the wall time grows with the load; the CPU time much less.")
print()

# --- side by side
print("## Side by side (greedy, held-out prompts)\n")
for l, lang in (("en", "English"), ("zh", "Chinese")):
    b = lines("base.gen.id_%s.jsonl" % l)
    a = lines("tuned.gen.id_%s.jsonl" % l)
    print("### Identity, %s\n" % lang)
    for rb, ra in list(zip(b, a))[:3]:
        print("**User:** %s\n" % text(rb).strip())
        print("untuned:\n\n%s\n" % quote(rb["completion"]))
        print("tuned:\n\n%s\n" % quote(ra["completion"]))
b = lines("base.gen.alpaca_gen.jsonl")
a = lines("tuned.gen.alpaca_gen.jsonl")
print("### Alpaca (general instructions, at most %s new tokens)\n" % P["ALPACA_TOKENS"])
for rb, ra in zip(b, a):
    print("**User:** %s\n" % cell(text(rb), 300))
    print("untuned:\n\n%s\n" % quote(rb["completion"]))
    print("tuned:\n\n%s\n" % quote(ra["completion"]))
print("### Classification (first 4 held-out records of each task)\n")
print("| text (start) | label | untuned | tuned |")
print("|---|---|---|---|")
for t, _ in TASKS:
    b = lines("base.gen.%s.jsonl" % t)
    a = lines("tuned.gen.%s.jsonl" % t)
    for rb, ra in list(zip(b, a))[:4]:
        print("| %s | %s | %s | %s |" % (cell(text(rb), 70), rb["label"], cell(rb["completion"], 50),
                                         cell(ra["completion"], 50)))
print()
print("### GSM8K (first held-out question)\n")
b = lines("base.gen.gsm8k.jsonl")[0]
a = lines("tuned.gen.gsm8k.jsonl")[0]
print("**User:** %s\n" % cell(text(b), 400))
print("untuned:\n\n%s\n" % quote(b["completion"], 600))
print("tuned:\n\n%s\n" % quote(a["completion"], 600))

# --- chat
print("## Chat with the result\n")
print("From the top of the repository (the programs are in bin/); type a message and Enter, "
      "`/reset` forgets the conversation, `/exit` or Ctrl-D ends:\n")
GGUF = os.path.join(OUT_TOP, "tuned.gguf")
print("    bin/icl-gen -m %s --chat --greedy" % shq(GGUF))
print("    bin/icl-gen -m %s --adapter %s --chat --greedy" % (shq(P["MODEL"]), shq(os.path.join(OUT_TOP, "lora"))))
print()
print("One conversation as a JSON record (the same reply):\n")
print("    echo '{\"messages\":[{\"role\":\"user\",\"content\":\"Who are you?\"}]}' | bin/icl-gen -m %s --greedy"
      % shq(GGUF))
print("    echo '{\"messages\":[{\"role\":\"user\",\"content\":\"你是谁？\"}]}' | bin/icl-gen -m %s --adapter %s --greedy"
      % (shq(P["MODEL"]), shq(os.path.join(OUT_TOP, "lora"))))
print()
print("In llama.cpp (the GGUF carries the tokenizer and the chat template):\n")
print("    llama-cli -m %s -cnv --temp 0" % shq(GGUF))
print("    python3 -c \"from llama_cpp import Llama; m = Llama(%r, verbose=False); " % GGUF +
      "print(m.create_chat_completion([{'role': 'user', 'content': 'Who are you?'}], temperature=0)['choices'][0]['message']['content'])\"")
