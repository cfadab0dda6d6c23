#!/bin/sh
# bench/tok-train.sh - `make bench-tok-train`: how icl-tok train's time grows
# with the length of a word (issue 18, defect 3: merging was quadratic, 400K
# characters of one word took 6.8 s and 1.6M more than a minute).  Trains a
# vocabulary of 2000 on one line holding one word of N random letters, for
# N = 400,000 and 4 x N, and prints both times and their ratio: about 4 (a
# little more: the merges sort their occurrences) for linear growth, 16 for
# quadratic.  SIZE=N changes the smaller size.  Run it on an idle machine.
set -eu
cd "$(dirname "$0")/.."
OUT=bench/out/tok-train
mkdir -p "$OUT"
N=${SIZE:-400000}
BIN=${ICL_BIN:-bin}
python3 - "$OUT" "$N" <<'PY'
import random, sys
out, n = sys.argv[1], int(sys.argv[2])
r = random.Random(3)
for name, k in (("small", n), ("large", 4 * n)):
    with open("%s/%s.txt" % (out, name), "w") as f:
        f.write("".join(r.choices("abcdefghijklmnopqrstuvwxyz", k=k)) + "\n")
PY
t() { # seconds of wall time of icl-tok train on $1 (best of 3)
    best=
    for _ in 1 2 3; do
        s=$(date +%s.%N)
        "$BIN/icl-tok" train --vocab-size 2000 -o "$OUT/$1.json" "$OUT/$1.txt" 2>/dev/null
        e=$(date +%s.%N)
        best=$(echo "$s $e $best" | awk '{d = $2 - $1; if ($3 == "" || d < $3) print d; else print $3}')
    done
    echo "$best"
}
ts=$(t small)
tl=$(t large)
echo "$N $ts $tl" | awk '{printf "icl-tok train, one word: %d chars %.3f s, %d chars %.3f s, ratio %.2f (linear 4, quadratic 16)\n", $1, $2, 4 * $1, $3, $3 / $2}'
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
