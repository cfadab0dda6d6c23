#!/bin/sh
# make bench-gen: greedy decoding tokens/s (KV cache; prefill of 16 ids
# included; 128 new tokens) of icl (bench/gen.c) against PyTorch with a KV
# cache (bench/torch_gen.py), same Llama config as bench-model (vocab 8192,
# hidden 512, 8 layers, 8 heads, intermediate 1376), batch 1 and 8, same run.
# PyTorch runs as installed (its thread default, the environment as it is)
# and at its best setting (OMP_WAIT_POLICY=passive, threads chosen per row).
set -eu
cd "$(dirname "$0")/.."
bin=build/bench/gen
[ -x "$bin" ] || { echo "bench/gen.sh: $bin missing (run make bench-gen)" >&2; exit 1; }
PY=/usr/bin/python3
N=${NEW:-128}
echo "# environment: OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset} OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-unset} $(nproc) CPUs"
installed=$($PY -c 'import torch; print(torch.get_num_threads())')
for B in 1 8; do
	for t in 1 2; do
		icl=$("$bin" "$t" "$B" "$N" | tee /dev/stderr | awk '{print $6}')
		pt=$(OMP_WAIT_POLICY=passive $PY bench/torch_gen.py "$t" "$B" "$N" | tee /dev/stderr | awk '{print $6}')
		awk -v a="$icl" -v b="$pt" -v B="$B" -v t="$t" \
			'BEGIN { printf "ratio    threads %d batch %d: icl / pytorch(passive) = %.2fx\n", t, B, a / b }'
	done
	pi=$($PY bench/torch_gen.py "$installed" "$B" "$N" | sed 's/^pytorch /pytorch as installed (no OMP_WAIT_POLICY)/' | tee /dev/stderr | awk '{print $(NF-4)}')
done
