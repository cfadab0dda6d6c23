#!/bin/sh
# make bench-model: forward+backward tokens/s of the model core (Llama config of
# issue 4) and its GFLOP/s against BLIS sgemm on the same shapes, same run.
set -eu
cd "$(dirname "$0")/.."
bin=build/bench/model
[ -x "$bin" ] || { echo "bench/model.sh: $bin missing (run make bench-model)" >&2; exit 1; }
for t in 1 2; do "$bin" "$t" "${STEPS:-5}"; done
build/bench/attention
