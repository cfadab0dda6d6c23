#!/bin/sh
# The thread count follows the machine's load (issue 18, "no collapse under
# load"; cmd/common/adapt.c): with a busy loop beside it, icl-train (and
# icl-gen, icl-eval -m) without --threads says on stderr that it runs on
# fewer threads, and computes exactly what a fixed count computes (every sum
# is ordered the same for any team size).  --threads, ICL_NUM_THREADS,
# --no-adaptive-threads and ICL_ADAPT_SECONDS=0 fix the count; -q silences
# the notice.  (The decision itself: tests/unit/test_adapt.c.)  No timing is
# asserted: whatever the machine's speed, a core kept busy by another
# program is seen in every window.  Windows are 0.1 s here instead of 1 s so
# that short runs see several.
. "$(dirname "$0")/lib.sh"
LLAMA="$DATA/model/llama-tiny/model"
NCPU=$(getconf _NPROCESSORS_ONLN)
export ICL_ADAPT_SECONDS=0.1
unset ICL_NUM_THREADS

# with_busy CMD ARGS...: CMD while a CPU-bound awk loop runs
with_busy() {
	awk 'BEGIN { for (;;) x++ }' &
	busy=$!
	rc=0; "$@" || rc=$?
	kill $busy; wait $busy 2>/dev/null || :
	return $rc
}

awk 'BEGIN { srand(7); for (e = 0; e < 24; e++) { n = 4 + int(rand() * 10); np = 1 + int(rand() * (n - 2));
	s = ""; for (i = 0; i < n; i++) s = s (i == 0 ? "" : i == np ? "\t" : " ") int(rand() * 96); print s } }' >rand.tok
A="-m $LLAMA --batch-size 3 --grad-accum 2 --max-steps 400 --lr 1e-2 --weight-decay 0.1 --clip 0.5 --save-every 0 --no-progress"
notice="^icl-train: other programs use [0-9.]* of [0-9]* cores: [0-9]* threads\{0,1\} from step [0-9]*$"
strip() { sed 's/, "tokens_per_s.*//' "$1"; }

if [ "$NCPU" -lt 2 ]; then
	test_skip 'icl-train under load: fewer threads, said on stderr, the same model' "one core"
else
test_expect_success 'icl-train under load: fewer threads, said on stderr, the same model as 1 thread' '
	with_busy icl-train $A -o ad rand.tok >m.ad 2>err &&
	grep "threads\{0,1\} from step" err >notes && cat notes &&
	grep -q "$notice" notes && test $(grep -v -c "$notice" notes) -eq 0 &&
	icl-train -q $A --threads 1 -o one rand.tok >m.one &&
	cmp ad/model.safetensors one/model.safetensors &&
	strip m.ad >a && strip m.one >b && test_cmp a b
'
fi

test_expect_success 'a fixed count does not adapt: --threads, ICL_NUM_THREADS, --no-adaptive-threads, ICL_ADAPT_SECONDS=0' '
	B="$A --max-steps 150" &&
	with_busy icl-train $B --threads 2 -o f1 rand.tok >/dev/null 2>e1 &&
	with_busy env ICL_NUM_THREADS=2 icl-train $B -o f2 rand.tok >/dev/null 2>e2 &&
	with_busy icl-train $B --no-adaptive-threads -o f3 rand.tok >/dev/null 2>e3 &&
	with_busy env ICL_ADAPT_SECONDS=0 icl-train $B -o f4 rand.tok >/dev/null 2>e4 &&
	with_busy icl-train -q $B -o f5 rand.tok >/dev/null 2>e5 &&
	for i in 1 2 3 4; do test_grep "threads 2 " e$i && if grep "other programs use" e$i; then exit 1; fi; done &&
	test ! -s e5
'

test_expect_code 1 'a bad ICL_ADAPT_SECONDS is refused' '
	ICL_ADAPT_SECONDS=soon icl-train -q $A -o bad rand.tok >/dev/null 2>err; rc=$?
	test_grep "ICL_ADAPT_SECONDS=soon: not a number of seconds" err && exit $rc
'

# icl-gen and icl-eval -m: one poll per batch or line; 2400 prompts so that
# a run lasts several 0.1 s windows on a fast machine (600 took 0.09 s);
# icl-gen polls before a batch, so a notice never names a line past the last
awk 'BEGIN { srand(9); for (e = 0; e < 2400; e++) { s = ""; for (i = 0; i < 6; i++) s = s (i ? " " : "") int(rand() * 96); print s } }' >p.tok
if [ "$NCPU" -lt 2 ]; then
	test_skip 'icl-gen and icl-eval -m under load: the notice, the same output' "one core"
else
test_expect_success 'icl-gen and icl-eval -m under load: the notice, the same output as 1 thread' '
	with_busy icl-gen -m $LLAMA --ids -n 8 --temperature 1 --seed 5 -b 2 --no-progress <p.tok >g.ad 2>ge &&
	icl-gen -m $LLAMA --ids -n 8 --temperature 1 --seed 5 -b 2 --threads 1 <p.tok >g.one &&
	test_cmp g.ad g.one && cat ge &&
	grep -q "^icl-gen: other programs use [0-9.]* of [0-9]* cores: [0-9]* threads\{0,1\} from line [0-9]*$" ge &&
	sed -n "s/.* from line \([0-9]*\)$/\1/p" ge | awk "\$1 > 2400 { exit 1 }" &&
	sed "s/\$/\t1 2/" p.tok >e.tok &&
	with_busy icl-eval -m $LLAMA --no-progress e.tok e.tok e.tok e.tok >e.ad 2>ee &&
	icl-eval -m $LLAMA --threads 1 e.tok e.tok e.tok e.tok >e.one &&
	test_cmp e.ad e.one && cat ee &&
	grep -q "^icl-eval: other programs use [0-9.]* of [0-9]* cores: [0-9]* threads\{0,1\} from line [0-9]*$" ee
'
fi

test_done
