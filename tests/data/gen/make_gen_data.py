#!/usr/bin/env python3
"""Make tests/data/gen from the fixtures in tests/data/model (each NAME/expected.json,
made by tests/hf/fixtures/make_fixtures.py; run from the repository root):
for each tiny model, greedy.prompt as a token line (NAME.greedy.in), the
expected generated ids (NAME.greedy.out: prompt TAB new ids, as icl-gen --ids
writes), the fixture's two token lines (NAME.tok) and its loss (NAME.loss)."""
import json, sys
src = sys.argv[1] if len(sys.argv) > 1 else "tests/data/model"
for m in ["llama-tiny", "gpt2-tiny", "qwen2-tiny"]:
    d = json.load(open(f"{src}/{m}/expected.json"))
    g = d["greedy"]
    p, o = g["prompt"], g["output"]
    assert o[:len(p)] == p
    w = lambda s: " ".join(map(str, s))
    open(f"tests/data/gen/{m}.greedy.in", "w").write(w(p) + "\n")
    open(f"tests/data/gen/{m}.greedy.out", "w").write(w(p) + "\t" + w(o[len(p):]) + "\n")
    open(f"tests/data/gen/{m}.tok", "w").write("\n".join(d["token_lines"]) + "\n")
    open(f"tests/data/gen/{m}.loss", "w").write(repr(d["loss"]) + " " + str(d["n_target_tokens"]) + "\n")
