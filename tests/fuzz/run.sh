#!/bin/sh
# Fuzz a parser with libFuzzer: sh tests/fuzz/run.sh safetensors|config|jinja|gguf|tokgguf|tokjson|lora_config|sniff|csv|json [seconds]
# Builds build-fuzz/fuzz_NAME with clang -fsanitize=fuzzer,address,undefined
# and runs it on tests/fuzz/corpus/NAME (new interesting inputs are added
# there; minimise with -merge=1 before committing). Needs clang.
set -eu
name=${1:?usage: run.sh safetensors|config|jinja|gguf|tokgguf|tokjson|lora_config|sniff|csv|json [seconds]}
secs=${2:-60}
cd "$(dirname "$0")/../.."
mkdir -p build-fuzz
src=$(echo lib/*.c) # the whole library (it compiles under clang: tests/t0024)
BLIS_INC=/usr/include/$(gcc -print-multiarch)/blis-openmp
BLIS_LIB=/usr/lib/$(gcc -print-multiarch)/blis-openmp
clang -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Ilib -isystem "$BLIS_INC" -fopenmp \
  -o build-fuzz/fuzz_$name tests/fuzz/fuzz_$name.c $src \
  -L"$BLIS_LIB" -Wl,-rpath,"$BLIS_LIB" -l:libblis.so.4 -lcsv -lxxhash -ljansson -lpcre2-8 -lutf8proc -lm
exec build-fuzz/fuzz_$name -max_total_time="$secs" -max_len=4096 tests/fuzz/corpus/$name
