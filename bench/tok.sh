#!/bin/sh
# bench/tok.sh - `make bench-tok`: icl-tok encode throughput against
#   - tiktoken (PyPI, in the venv `make bench-deps` makes under bench/out/venv;
#     the npm registry is not reachable from these machines, so the Python
#     package replaces the npm one; both wrap the same Rust core) with GPT-2's
#     ranks, 1 thread and all threads, and
#   - spm_encode (Debian's sentencepiece) with Llama 2's tokenizer.model
#     against icl-tok with llama2.json (1 thread; spm_encode has no threads).
# Same text, same run; the ids are compared too.  Prints MB/s and ratios.
set -eu
cd "$(dirname "$0")/.."
OUT=bench/out/tok
mkdir -p "$OUT"
PY=bench/out/venv/bin/python
if [ ! -x "$PY" ] || ! "$PY" -c 'import tiktoken' 2>/dev/null; then
    echo "bench-tok: tiktoken not installed: run 'make bench-deps' first" >&2
    exit 2
fi
gzip -dc tests/data/tok/corpus.txt.gz >"$OUT/corpus.txt"
gzip -dc tests/data/tok/gpt2.json.gz >"$OUT/gpt2.json"
gzip -dc tests/data/tok/llama2.json.gz >"$OUT/llama2.json"
SPM_MODEL=${SPM_MODEL:-../shared/data/tokenizers/llama2/tokenizer.model}
exec "$PY" bench/tok_bench.py "$OUT" "$SPM_MODEL"
