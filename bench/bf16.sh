#!/bin/sh
# make bench-bf16: lib/bf16.c's bf16 product (vdpbf16ps, float32 sums)
# against BLIS sgemm on SmolLM2-135M's forward shapes, M rows (default 2048
# = 8 x 256 tokens), 1 and 2 threads, same run (bench/bf16.c; best of REPS,
# default 3).  Then the packed products of the bf16 GEMM and training path
# (bench/bf16_train.c: forward, input gradient, weight gradient at T rows,
# K 576, N 576/192/1536/49152) against sgemm.  Compare with bench-peak's
# bf16 and fp32 peaks.  Last, bench/bf16_shapes.c: every product of a
# SmolLM2-135M bf16 training step (forward, input and weight gradient of
# q|k|v, o, gate|up, down and the head) as % of the bf16 peak measured in
# the same run and as its share of the step (1 thread: CPU time).
set -eu
cd "$(dirname "$0")/.."
bin=build/bench/bf16
[ -x "$bin" ] || { echo "bench/bf16.sh: $bin missing (run make bench-bf16)" >&2; exit 1; }
echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for t in 1 2; do
	"$bin" "$t" "${M:-2048}" "${REPS:-3}"
done
for t in 1 2; do
	build/bench/bf16_train "$t" "${M:-2048}" "${REPS:-3}"
done
for t in 1 2; do
	build/bench/bf16_shapes "$t" "${M:-2048}" "${REPS:-3}"
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
