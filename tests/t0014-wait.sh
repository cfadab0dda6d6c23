#!/bin/sh
# Waiting threads spin a bounded time, then sleep (issue 18, "no collapse
# under load"): with neither GOMP_SPINCOUNT nor OMP_WAIT_POLICY set, every
# program re-executes itself with GOMP_SPINCOUNT=2000 (libgomp reads it
# before main); a user's setting is kept; every program carries the BLIS
# barrier of cmd/common/blis_wait.c; results do not depend on the policy.
# (The barrier itself: tests/unit/test_blis_wait.c.)
. "$(dirname "$0")/lib.sh"
PROGS="icl-fmt icl-tok icl-train icl-gen icl-eval icl-convert"
# libgomp prints its settings at start-up with OMP_DISPLAY_ENV=verbose: one
# block per program image, the last one is what the program ran with.
shows() { # shows PROG: the GOMP_SPINCOUNT lines, one per image
	env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT OMP_DISPLAY_ENV=verbose "$@" --version 2>&1 >/dev/null |
		sed -n "s/^ *GOMP_SPINCOUNT = //p"
}

test_expect_success 'no policy set: each program re-executes itself with GOMP_SPINCOUNT=2000' '
	for p in $PROGS; do
		shows $p >s && tail -1 s >last && echo "$p: $(tr "\n" " " <s)" &&
		test $(wc -l <s) -eq 2 && test "$(cat last)" = "'"'2000'"'" || exit 1
	done
'

test_expect_success 'a policy the user set is kept, without re-executing' '
	for p in $PROGS; do
		env -u GOMP_SPINCOUNT OMP_WAIT_POLICY=passive OMP_DISPLAY_ENV=verbose $p --version 2>&1 >/dev/null |
			sed -n "s/^ *GOMP_SPINCOUNT = //p" >s &&
		test "$(cat s)" = "'"'0'"'" &&
		env -u OMP_WAIT_POLICY GOMP_SPINCOUNT=5k OMP_DISPLAY_ENV=verbose $p --version 2>&1 >/dev/null |
			sed -n "s/^ *GOMP_SPINCOUNT = //p" >s &&
		test "$(cat s)" = "'"'5000'"'" || exit 1
	done
'

if command -v nm >/dev/null 2>&1; then
test_expect_success 'every program defines bli_thrcomm_barrier (it replaces BLIS 0.9'"'"'s spinning one)' '
	for p in $PROGS; do
		nm -D "$ICL_BIN/$p" | grep -q " T bli_thrcomm_barrier$" || { echo "$p"; exit 1; }
	done
'
else
test_skip 'every program defines bli_thrcomm_barrier' 'no nm'
fi

awk 'BEGIN { srand(3); for (e = 0; e < 16; e++) { s = "\t"; for (i = 0; i < 32; i++) s = s (i ? " " : "") int(rand() * 512); print s } }' >d.tok
cat >train.sh <<EOF
exec icl-train -q --arch llama --hidden-size 64 --num-hidden-layers 1 --num-attention-heads 4 \\
	--intermediate-size 128 -t "$DATA/tok/bytelevel-512.json" --batch-size 4 --max-steps 3 \\
	--no-shuffle --threads 2 -o "\$1" d.tok >/dev/null
EOF

test_expect_success 'icl-train with 2 threads: the same model whether threads spin or sleep' '
	env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT sh train.sh ra &&
	env -u GOMP_SPINCOUNT OMP_WAIT_POLICY=passive sh train.sh rp &&
	env -u OMP_WAIT_POLICY GOMP_SPINCOUNT=infinite sh train.sh rs &&
	cmp ra/model.safetensors rp/model.safetensors && cmp ra/model.safetensors rs/model.safetensors
'

test_done
