#!/bin/sh
# examples/report.py honours the demo's O= (examples/Makefile): it reads
# every file from OUT_DIR and the commands it prints name OUT_DIR's files
# (from the top of the repository: relative inside it, else absolute), never
# examples/out.  A run folder is fabricated here (the real one takes
# minutes of CPU): the numbers in the table must be the fabricated ones.
. "$(dirname "$0")/lib.sh"
EX="$TESTS_DIR/../examples"

# fake_run DIR: the files report.py reads, with known values
fake_run() {
	python3 - "$1" <<'PY'
import json, os, sys
o = sys.argv[1]
os.makedirs(os.path.join(o, "time"), exist_ok=True)
def put(name, obj):
    with open(os.path.join(o, name), "w", encoding="utf-8") as f:
        f.write(json.dumps(obj) + "\n")
def rows(name, recs):
    with open(os.path.join(o, name), "w", encoding="utf-8") as f:
        for r in recs:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
chat = lambda q: "<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n" % q
for m, a in (("base", 0.05), ("tuned", 0.875)):
    for t in ("amazon", "agnews"):
        put("%s.gen.%s.acc.json" % (m, t), {"records": 40, "accuracy": a})
    put("%s.gsm8k.json" % m, {"records": 10, "exact_match": 0.1})
    put("%s.ppl.alpaca.json" % m, {"records": 4, "tokens": 100, "perplexity": 5.5 if m == "base" else 5.6})
    for t in ("amazon", "agnews"):
        rows("%s.gen.%s.jsonl" % (m, t), [{"prompt": chat("review %d" % i), "label": "positive",
                                           "completion": "positive"} for i in range(4)])
    for l in ("en", "zh"):
        rows("%s.gen.id_%s.jsonl" % (m, l), [{"prompt": chat("Who are you? %d" % i), "completion": "I am Nimbus."}
                                             for i in range(3)])
    rows("%s.gen.alpaca_gen.jsonl" % m, [{"prompt": chat("Name a colour."), "completion": "Blue."}])
    rows("%s.gen.gsm8k.jsonl" % m, [{"prompt": chat("1+1?"), "completion": "#### 2"}])
for m in ("base", "tuned", "export"):
    for l in ("en", "zh"):
        put("%s.name.id_%s.json" % (m, l), {"records": 6, "exact_match": 0.5 if m == "base" else 1.0})
for t in ("amazon", "agnews"):
    put("majority.%s.json" % t, {"records": 40, "accuracy": 0.525})
    for s in ("train", "test"):
        rows("%s.%s.chat.jsonl" % (t, s), [{"prompt": chat("x"), "response": "positive", "label": "positive"}] * 3)
for s in ("id_en.train", "id_zh.train", "id_other.train", "gsm8k.train", "id_en.test", "id_zh.test",
          "alpaca.test", "gsm8k.test"):
    rows(s + ".chat.jsonl", [{"prompt": chat("q"), "response": "a"}] * 2)
rows("lora.metrics.jsonl", [{"step": i, "loss": 2.0 - 0.1 * i, "tokens_per_s": 100.0} for i in range(1, 7)])
with open(os.path.join(o, "train.tok"), "w") as f:
    f.write("1 2 3\t4 5\n6 7\t8\n")
for s in ("train", "gen.tuned.amazon"):
    with open(os.path.join(o, "time", s), "w") as f:
        f.write("12.5 204800 20.0 1.0\n")
PY
}
PARAMS="LORA_R=16 LORA_ALPHA=32 LORA_TARGETS=all-linear EXPORT_TYPE=Q8_0 ID_REPEAT=4 ALPACA_TRAIN=24 NAME=Nimbus
	BATCH=8 SEQ=256 ALPACA_TOKENS=64 MODEL=/models/base.gguf CLS_REPEAT=3 DTYPE=bf16"

test_expect_success 'O outside the repository: read from there, commands name it absolute' '
	fake_run "$TEST_TMP/else where/run" &&
	(cd "$EX" && python3 report.py "$TEST_TMP/else where/run" $PARAMS) >R &&
	test_grep "| \*\*35/40 (87.5%)\*\* | 21/40 (52.5%) |" R &&
	test_grep "| all steps | 25.0 | 42.0 | 200 (largest) |" R &&
	test_grep "O='"'"'$TEST_TMP/else where/run'"'"' LORA_R=16" R &&
	test_grep "icl-gen -m '"'"'$TEST_TMP/else where/run/tuned.gguf'"'"' --greedy" R &&
	test_grep "icl-gen -m '"'"'$TEST_TMP/else where/run/tuned.gguf'"'"' --chat --greedy" R &&
	test_grep "--adapter '"'"'$TEST_TMP/else where/run/lora'"'"' --chat --greedy" R &&
	test_grep "--adapter '"'"'$TEST_TMP/else where/run/lora'"'"' --greedy" R &&
	test_grep "llama-cli -m '"'"'$TEST_TMP/else where/run/tuned.gguf'"'"' -cnv" R &&
	test_grep "Llama('"'"'$TEST_TMP/else where/run/tuned.gguf'"'"'" R &&
	! grep -n "examples/out\|\`out/" R
'

test_expect_success 'O inside the repository: commands name it from the top, O=out is not repeated' '
	mkdir -p repo/examples && cp "$EX/report.py" repo/examples/ &&
	fake_run repo/examples/mine &&
	(cd repo/examples && python3 report.py mine $PARAMS) >R &&
	test_grep "icl-gen -m examples/mine/tuned.gguf --greedy" R &&
	test_grep "with: \`O=mine LORA_R=16" R &&
	fake_run repo/examples/out &&
	(cd repo/examples && python3 report.py out $PARAMS) >R2 &&
	test_grep "with: \`LORA_R=16" R2 &&
	test_grep "icl-gen -m examples/out/tuned.gguf --greedy" R2
'

test_expect_success 'a missing file of OUT_DIR fails naming it under OUT_DIR' '
	fake_run part && rm part/tuned.gsm8k.json &&
	test_must_fail python3 "$EX/report.py" part $PARAMS >R 2>err &&
	test_grep "part/tuned.gsm8k.json" err
'

test_done
