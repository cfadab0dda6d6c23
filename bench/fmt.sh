#!/bin/sh
# bench/fmt.sh (make bench-fmt): icl-fmt against Miller on the same 100+ MB
# CSV, in the same run.  The CSV is the real awesome_chatgpt_prompts.csv
# (CRLF rows, LF inside quoted fields, doubled quotes) with its data rows
# repeated 30 times under one header.
#   icl-fmt --map instruction=act,output=prompt big.csv   (Alpaca template)
#   mlr --icsv --ojsonl cat big.csv                        (Debian's miller)
# Each is run REPS times (default 3) and its best time counts; output goes
# to /dev/null.  Prints MB/s (10^6 bytes of input per second) and the ratio.
set -eu
cd "$(dirname "$0")/.."
REPS=${REPS:-3}
OUT=bench/out
mkdir -p "$OUT"
BIG=$OUT/fmt-big.csv
if [ ! -s "$BIG" ]; then
    gunzip -c tests/data/fmt/awesome_chatgpt_prompts.csv.gz >"$OUT/one.csv"
    { head -n 1 "$OUT/one.csv"
      i=0; while [ $i -lt 30 ]; do tail -n +2 "$OUT/one.csv"; i=$((i + 1)); done
    } >"$BIG"
    rm -f "$OUT/one.csv"
fi
command -v mlr >/dev/null || { echo "bench-fmt: needs mlr (make bench-deps)"; exit 1; }
bytes=$(wc -c <"$BIG")
now() { date +%s.%N; }
best() { # command...: best wall time of REPS runs, in seconds
    b=""
    i=0
    while [ $i -lt "$REPS" ]; do
        t0=$(now); "$@" >/dev/null; t1=$(now)
        b=$(echo "$t0 $t1 ${b:-1e9}" | awk '{t = $2 - $1; print (t < $3 ? t : $3)}')
        i=$((i + 1))
    done
    echo "$b"
}
recs=$(bin/icl-fmt --map instruction=act,output=prompt "$BIG" | wc -l)
mrecs=$(mlr --icsv --ojsonl cat "$BIG" | grep -c '^{')
echo "input: $BIG, $bytes bytes, $recs records (icl-fmt), $mrecs records (mlr)"
echo "machine: $(nproc) cores; $(mlr --version); $(bin/icl-fmt --version | head -1)"
ti=$(best bin/icl-fmt --map instruction=act,output=prompt "$BIG")
tm=$(best mlr --icsv --ojsonl cat "$BIG")
awk -v b="$bytes" -v ti="$ti" -v tm="$tm" 'BEGIN {
    printf "icl-fmt:                  %8.1f MB/s  (%.3f s)\n", b / ti / 1e6, ti
    printf "mlr --icsv --ojsonl cat:  %8.1f MB/s  (%.3f s)\n", b / tm / 1e6, tm
    printf "ratio icl-fmt / mlr:      %8.2fx\n", tm / ti
}'
