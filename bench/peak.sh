#!/bin/sh
# make bench-peak: this machine's own limits (bench/peak.c): fp32 FMA
# GFLOP/s (AVX-512), bf16 dot-product GFLOP/s (vdpbf16ps), int8 dot-product
# GOP/s (vpdpbusd, AVX512-VNNI) and streaming-read memory bandwidth, on 1 and
# 2 threads; every other benchmark's figure is a ratio to these, measured in
# the same session.  SECONDS_PER (per measurement, default 0.5), MIB (read
# buffer, default 1024) and THREADS ("1 2") override the defaults; take it
# on an idle machine (load average printed before and after).
set -eu
cd "$(dirname "$0")/.."
bin=build/bench/peak
[ -x "$bin" ] || { echo "bench/peak.sh: $bin missing (run make bench-peak)" >&2; exit 1; }
echo "# $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'); $(nproc) CPUs; load before $(cut -d' ' -f1-3 /proc/loadavg)"
# shellcheck disable=SC2086
"$bin" "${SECONDS_PER:-0.5}" "${MIB:-1024}" ${THREADS:-1 2}
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
