#!/bin/sh
# make bench-qdot: one decoding step's matrix products of SmolLM2-135M
# (30 layers of TYPE, default q4_1 as the real GGUF, and the Q8_0 tied head)
# through lib/qdot.c's icl_qmatvec against linear.c's float32 rows kernel on
# the same weights dequantized, batch 1 and 8, 1 and 2 threads, same run
# (bench/qdot.c; REPS repetitions, best kept, default 20).  Compare the GB/s
# with bench-peak's memory bandwidth.
set -eu
cd "$(dirname "$0")/.."
bin=build/bench/qdot
[ -x "$bin" ] || { echo "bench/qdot.sh: $bin missing (run make bench-qdot)" >&2; exit 1; }
echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for B in 1 8; do
	for t in 1 2; do
		"$bin" "$t" "$B" "${REPS:-20}" "${TYPE:-q4_1}"
	done
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
