#!/bin/sh
# The whole pipeline on a small slice of the demo's real data (examples/):
# icl-fmt -> icl-tok train/encode -> icl-train (pre-train, then tune) ->
# icl-gen / icl-eval -> plot -> report, through examples/scratch.mk itself
# (make demo-scratch, the earlier demo);
# then model folders written by icl-train read back by icl-gen and icl-eval,
# with Hugging Face names and shapes checked against the fixture models' own
# config.json and model.safetensors (tests/data/model).
. "$(dirname "$0")/lib.sh"
EX="$TESTS_DIR/../examples"
M="$DATA/model"
export ICL_NUM_THREADS=1

# field KEY FILE: a key of the (first) JSON object in FILE
field() {
	python3 -c '
import json, sys
s = open(sys.argv[2]).read()
try:
    o = json.loads(s)
except ValueError:
    o = json.loads(s.splitlines()[0])
v = o[sys.argv[1]]
print("null" if v is None else v)' "$1" "$2"
}
count() { grep -vc '^#' "$1"; }

# the slice: 60 Alpaca records (still a JSON array), 40 records of each
# classification task, 20 C4 documents
mkdir data
python3 -c '
import json, sys
a = json.load(open(sys.argv[1]))
json.dump(a[:60], open("data/alpaca_en_demo.json", "w"), ensure_ascii=False, indent=2)
' "$EX/data/alpaca_en_demo.json"
head -40 "$EX/data/t0_amazon_polarity_Is_this_review.jsonl" >data/t0_amazon_polarity_Is_this_review.jsonl
head -40 "$EX/data/t0_ag_news_classify_with_choices.jsonl" >data/t0_ag_news_classify_with_choices.jsonl
head -20 "$EX/data/c4_demo.jsonl" >data/c4_demo.jsonl
# the header and 30 rows of the CSV, cut at a record end (CRLF; LF inside quotes)
python3 -c '
import sys
b = open(sys.argv[1], "rb").read(); pos = 0
for i in range(31):
    pos = b.index(b"\r\n", pos) + 2
open("data/awesome_chatgpt_prompts_head200.csv", "wb").write(b[:pos])
' "$EX/data/awesome_chatgpt_prompts_head200.csv"

O="$TEST_TMP/out"
KNOBS="D=$TEST_TMP/data O=$O BIN=$ICL_BIN THREADS=1 VOCAB=320 HIDDEN=32 LAYERS=1 HEADS=2 KV_HEADS=1
       FFN=64 SEQ=128 PT_STEPS=6 SFT_EPOCHS=1 CLS_REPEAT=1 BATCH=4 GEN_TOKENS=12 CLS_TOKENS=4"

test_expect_success 'the shipped data match examples/data/MANIFEST.md' '
	make -s -C "$EX" verify >v && test $(grep -c ": OK$" v) = 8
'

test_expect_success 'examples/scratch.mk runs the whole pipeline on the slice' '
	make -C "$EX" -f scratch.mk $KNOBS >make.log 2>&1 || { tail -30 make.log; exit 1; }
	test -s $O/REPORT.md
'

test_expect_success 'records: train/validation/test splits of the right sizes, nothing lost' '
	test $(count $O/alpaca.train.jsonl) = 54 &&
	test $(count $O/alpaca.valid.jsonl) = 3 && test $(count $O/alpaca.test.jsonl) = 3 &&
	test $(count $O/amazon.train.jsonl) = 30 && test $(count $O/amazon.test.jsonl) = 10 &&
	test $(count $O/agnews.train.jsonl) = 30 && test $(count $O/agnews.test.jsonl) = 10 &&
	test $(count $O/prompts.train.jsonl) = 27 && test $(count $O/prompts.test.jsonl) = 3 &&
	test $(count $O/sft.jsonl) = 141 &&
	cat $O/prompts.train.jsonl $O/prompts.test.jsonl | grep -c "Instruction:.*Linux Terminal" | grep -qx 1 &&
	! grep -q "endoftext" $O/amazon.test.jsonl $O/agnews.train.jsonl &&
	grep -q "\"response\":\"Positive\"" $O/amazon.train.jsonl &&
	grep -q "### Response:\"" $O/agnews.test.jsonl
'

test_expect_success 'token lines: the #icl-tokens header, one line per record, EOS ends each response' '
	python3 -c "import json; t = json.load(open(\"$O/tok.json\")); assert len(t[\"model\"][\"vocab\"]) == 320, len(t[\"model\"][\"vocab\"])" &&
	for f in alpaca.test alpaca.valid cls.test prompts.test sft; do
		head -1 $O/$f.tok | grep -Eq "^#icl-tokens 1 fingerprint=xxh3:[0-9a-f]{16} vocab_size=320 bos=-1 eos=0 pad=-1 source=" &&
		test $(count $O/$f.tok) = $(count $O/$f.jsonl) &&
		awk -F "\t" "!/^#/ && (NF != 2 || \$2 !~ / 0\$|^0\$/) { bad++ } END { exit bad > 0 }" $O/$f.tok || exit 1
	done &&
	awk -F "\t" "!/^#/ { if (\$1 != \"\") bad++; n = split(\$2, a, \" \"); if (n > 127) bad++ } END { exit bad > 0 }" $O/pt.tok &&
	test $(grep -c " 0$" $O/pt.tok) = 20
'

test_expect_success 'metrics: one JSON object per logged step with the documented keys' '
	for m in base tuned; do
		python3 - $O/$m.metrics.jsonl <<-\EOF || exit 1
		import json, sys
		rows = [json.loads(l) for l in open(sys.argv[1])]
		assert rows, "no metrics"
		for r in rows:
		    for k in ("step", "epoch", "loss", "lr", "grad_norm", "tokens_per_s"):
		        assert k in r and isinstance(r[k], (int, float)), (k, r)
		    assert r["loss"] > 0 and r["tokens_per_s"] > 0, r
		assert "val_loss" in rows[-1] and rows[-1]["val_loss"] > 0, rows[-1]
		steps = [r["step"] for r in rows]
		assert steps == sorted(steps) and len(set(steps)) == len(steps), steps
		EOF
	done &&
	test $(tail -1 $O/base.metrics.jsonl | python3 -c "import json,sys; print(json.load(sys.stdin)[\"step\"])") = 6
'

test_expect_success 'checkpoints load: icl-eval -m and icl-gen on the final models and a checkpoint' '
	test -d $O/base/checkpoint-6 &&
	for d in $O/base $O/tuned $O/base/checkpoint-6; do
		test -s $d/config.json && test -s $d/model.safetensors && test -s $d/tokenizer.json &&
		icl-eval -m $d $O/alpaca.test.tok >e.json &&
		test $(field records e.json) = 3 && test $(field tokens e.json) -gt 0 &&
		python3 -c "import json,math; p = json.load(open(\"e.json\"))[\"perplexity\"]; assert math.isfinite(p) and 1 < p < 1e5, p" &&
		head -2 $O/alpaca.test.jsonl | icl-gen -m $d -n 3 --greedy >g.jsonl &&
		test $(wc -l <g.jsonl) = 2 && grep -q "\"completion\":" g.jsonl || exit 1
	done
'

test_expect_success 'evaluation files and the report' '
	for m in base tuned; do
		test $(field records $O/$m.eval.amazon.json) = 10 &&
		test $(field records $O/$m.eval.agnews.json) = 10 &&
		test $(field prompts $O/$m.eos.alpaca.json) = 3 &&
		test $(field prompts $O/$m.eos.cls.json) = 20 &&
		test $(wc -l <$O/$m.gen.cls.jsonl) = 20 || exit 1
	done &&
	test_grep "| Alpaca response perplexity (3 responses" $O/REPORT.md &&
	test_grep "| role-play prompt perplexity (CSV source; 3 responses" $O/REPORT.md &&
	test $(field records $O/tuned.ppl.prompts.json) = 3 &&
	test_grep "| both classification tasks, accuracy (20)" $O/REPORT.md &&
	test_grep "stops by itself (EOS) more often after tuning" $O/REPORT.md &&
	test_grep "^\*\*Instruction:\*\*" $O/REPORT.md
'

if command -v gnuplot >/dev/null 2>&1; then
	test_expect_success 'the loss plot is a PNG' '
		test "$(head -c 4 $O/loss.png | od -An -c | tr -d " ")" = "211PNG"
	'
else
	test_skip 'the loss plot is a PNG' 'no gnuplot'
fi

test_expect_success 'make again rebuilds nothing; a generation knob reruns generation only' '
	make -C "$EX" -f scratch.mk $KNOBS >again.log 2>&1 &&
	! grep -E "icl-(fmt|tok|train|gen|eval) " again.log &&
	make -C "$EX" -f scratch.mk $KNOBS GEN_TOKENS=6 >knob.log 2>&1 &&
	grep -q "icl-gen .*-n 6" knob.log &&
	! grep -E "icl-(fmt|tok|train) " knob.log
'

# --- model folders written by icl-train, checked against the fixtures' own files
# hf_check OURS FIXTURE: same config keys (those icl writes are a subset with
# the fixture's names), same tensor names, same shapes once the vocabulary
# dimension is substituted, float32.
cat >hf_check.py <<'EOF'
import json, struct, sys
def st(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
    h.pop("__metadata__", None)
    return h
ours, ref = sys.argv[1], sys.argv[2]
co, cr = json.load(open(ours + "/config.json")), json.load(open(ref + "/config.json"))
for k in ("model_type", "vocab_size", "architectures", "hidden_size", "n_embd", "num_hidden_layers", "n_layer"):
    assert (k in co) == (k in cr), ("config.json: key", k, k in co, k in cr)
assert co["model_type"] == cr["model_type"] and co["architectures"] == cr["architectures"], (co, cr)
hf_names = set(cr) | {"rope_theta", "rope_scaling", "torch_dtype", "dtype", "n_ctx", "head_dim",
                      "eos_token_id", "bos_token_id", "pad_token_id", "tie_word_embeddings"}
unknown = sorted(set(co) - hf_names)
assert not unknown, ("config keys not in the fixture's config.json", unknown)
for k in ("hidden_size", "n_embd", "num_hidden_layers", "n_layer", "num_attention_heads", "n_head",
          "num_key_value_heads", "intermediate_size", "n_inner"):
    if k in cr and k in co and len(sys.argv) > 3:
        assert co[k] == cr[k], (k, co[k], cr[k])
to, tr = st(ours + "/model.safetensors"), st(ref + "/model.safetensors")
vo, vr = co.get("vocab_size"), cr.get("vocab_size")
assert set(to) == set(tr), ("tensor names differ", sorted(set(to) ^ set(tr)))
for k in tr:
    want = [vo if d == vr else d for d in tr[k]["shape"]]
    assert to[k]["shape"] == want, (k, to[k]["shape"], want)
    assert to[k]["dtype"] == "F32", (k, to[k]["dtype"])
print("ok", len(to), "tensors")
EOF

test_expect_success 'a model trained from scratch by icl-train has the fixture llama-tiny names and shapes' '
	icl-train -q --arch llama -t $O/tok.json -o scratch --hidden-size 64 --num-hidden-layers 2 \
		--num-attention-heads 4 --num-key-value-heads 2 --intermediate-size 160 --seq-len 128 \
		--max-steps 2 --batch-size 2 $O/alpaca.valid.tok >/dev/null &&
	python3 hf_check.py scratch $M/llama-tiny/model same-sizes &&
	test $(field vocab_size scratch/config.json) = 320 &&
	test $(field eos_token_id scratch/config.json) = 0 &&
	icl-eval -m scratch $O/alpaca.test.tok >s.json && test $(field records s.json) = 3 &&
	head -1 $O/alpaca.test.jsonl | icl-gen -m scratch -n 4 --greedy | grep -q "\"completion\":"
'

for f in llama-tiny qwen2-tiny gpt2-tiny; do
	test_expect_success "fine-tuning the fixture $f: the saved folder keeps its HF names and shapes and is read back" "
		icl-train -q -m $M/$f/model -o ft-$f --max-steps 2 --batch-size 2 --lr 1e-3 \
			$DATA/train/$f.tok >ft-$f.metrics &&
		test \$(wc -l <ft-$f.metrics) = 2 &&
		python3 hf_check.py ft-$f $M/$f/model same-sizes &&
		icl-eval -m ft-$f $DATA/train/$f.tok >ev.json &&
		icl-eval -m $M/$f/model $DATA/train/$f.tok >ev0.json &&
		test \$(field tokens ev.json) = \$(field tokens ev0.json) &&
		python3 -c 'import json; a = json.load(open(\"ev.json\"))[\"loss\"]; b = json.load(open(\"ev0.json\"))[\"loss\"]; assert a < b, (a, b)' &&
		grep -v '^#' $DATA/train/$f.tok | icl-gen -m ft-$f --ids -n 3 --greedy >ids &&
		test \$(wc -l <ids) = \$(grep -vc '^#' $DATA/train/$f.tok)
	"
done

test_done
