#!/bin/sh
# Evaluate a model folder on a slice of GSM8K's test set, scored by the final
# number (icl-eval --extract gsm8k).  See examples/gsm8k.md.
#
#   examples/gsm8k.sh MODEL_DIR [N [OUT]]
#
# MODEL_DIR: a Hugging Face folder icl-gen reads (e.g. examples/out-scratch/tuned
# after `make demo-scratch`, or a model you tuned with icl-train); N: how many test
# problems (default 50); OUT: where the files go (default out-gsm8k).
# Environment: BIN (icl programs, default ../bin next to this script),
# TEMPLATE (icl-fmt's template, default alpaca: use the one the model was
# tuned with), TOKENS (new tokens per answer, default 256).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$here/../bin}
MODEL=${1:?usage: gsm8k.sh MODEL_DIR [N [OUT]]}
N=${2:-50}
OUT=${3:-out-gsm8k}
TEMPLATE=${TEMPLATE:-alpaca}
TOKENS=${TOKENS:-256}
mkdir -p "$OUT"

# 1. the first N problems of the test set (question, answer "... #### 72")
gzip -dc "$here/../tests/data/eval/gsm8k_test.jsonl.gz" | head -n "$N" >"$OUT/slice.jsonl"

# 2. as instructions in the model's template: prompt = the question, response =
#    the reference solution (icl-fmt keeps "question" and "answer" too)
"$BIN/icl-fmt" -q -T "$TEMPLATE" --map instruction=question,output=answer "$OUT/slice.jsonl" \
    >"$OUT/test.jsonl"

# 3. greedy answers, stopping at a blank line (the model's answer paragraph)
nl='
'
"$BIN/icl-gen" -m "$MODEL" -n "$TOKENS" --greedy --stop "$nl$nl" "$OUT/test.jsonl" >"$OUT/pred.jsonl"

# 4. the score: the number after "####" (or the last number) of the completion
#    against the reference's; per-problem lines for looking at the failures
"$BIN/icl-eval" --extract gsm8k --metrics em --per-record "$OUT/per.jsonl" "$OUT/pred.jsonl"
