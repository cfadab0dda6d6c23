#!/bin/sh
# make bench-gen: greedy decoding tokens/s (KV cache; prefill of 16 ids
# included; 128 new tokens) of icl (bench/gen.c) against PyTorch with a KV
# cache (bench/torch_gen.py), same Llama config as bench-model (vocab 8192,
# hidden 512, 8 layers, 8 heads, intermediate 1376), batch 1 and 8, same run.
# Each program reports its best of 3 generations; the two are run in turn
# ROUNDS times (default 2) and the best of each is compared, so that a busy
# moment on a shared machine does not land on one side only.
# PyTorch runs at its best setting (OMP_WAIT_POLICY=passive) and as installed.
set -eu
cd "$(dirname "$0")/.."
bin=build/bench/gen
[ -x "$bin" ] || { echo "bench/gen.sh: $bin missing (run make bench-gen)" >&2; exit 1; }
PY=/usr/bin/python3
N=${NEW:-128}
R=${ROUNDS:-2}
echo "# environment: OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset} OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-unset} $(nproc) CPUs; load $(cut -d' ' -f1-3 /proc/loadavg)"
installed=$($PY -c 'import torch; print(torch.get_num_threads())')
max() { awk -v a="$1" -v b="$2" 'BEGIN { print (a > b ? a : b) }'; }
for B in 1 8; do
	for t in 1 2; do
		bi=0 bp=0
		for r in $(seq 1 "$R"); do
			i=$("$bin" "$t" "$B" "$N" | awk '{print $6}')
			p=$(OMP_WAIT_POLICY=passive $PY bench/torch_gen.py "$t" "$B" "$N" | awk '{print $6}')
			bi=$(max "$bi" "$i") bp=$(max "$bp" "$p")
		done
		awk -v a="$bi" -v b="$bp" -v B="$B" -v t="$t" 'BEGIN {
			printf "threads %d batch %d: icl %8.1f tokens/s, pytorch (passive) %8.1f tokens/s, ratio %.2fx\n", t, B, a, b, a / b }'
	done
	p=$($PY bench/torch_gen.py "$installed" "$B" "$N" | awk '{print $6}')
	echo "pytorch as installed (threads $installed, environment as is) batch $B: $p tokens/s"
done
"$bin" 1 1 1 | sed 's/.*(/# icl: (/'
$PY -c "import torch; print(\"# pytorch\", torch.__version__, \"default threads\", torch.get_num_threads())"
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
