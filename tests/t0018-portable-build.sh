#!/bin/sh
# README's "make deps && make  # ... PORTABLE=1 for a generic build": the
# generic build (no -march) compiles under -Werror and its programs give
# the native build's results.  Built at -O0 under this test's folder (the
# flags' warnings do not depend on the optimisation level; -O0 is quick).
. "$(dirname "$0")/lib.sh"
ROOT="$TESTS_DIR/.."
LLAMA="$DATA/model/llama-tiny/model"

test_expect_success 'make PORTABLE=1 builds every program' '
	env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -C "$ROOT" -j2 PORTABLE=1 SANITIZE= OPTFLAGS=-O0 \
		B="$TEST_TMP/b" LIBDIR="$TEST_TMP/lib" BINDIR="$TEST_TMP/bin" all >out 2>err ||
		{ cat err; exit 1; }
	for p in icl-fmt icl-tok icl-train icl-gen icl-eval icl-convert; do
		"$TEST_TMP/bin/$p" --version >v && test_grep "^$p (icl) " v || exit 1
	done
'

test_expect_success 'the generic programs compute what the native ones do' '
	printf "1 2 3\t4 5 6\n7 8\t9 10 11 12\n" >t.tok &&
	"$TEST_TMP/bin/icl-eval" -q --threads 1 -m "$LLAMA" t.tok >generic &&
	icl-eval -q --threads 1 -m "$LLAMA" t.tok >native &&
	awk -v a="$(sed "s/.*\"loss\":\([-0-9.e]*\).*/\1/" generic)" -v b="$(sed "s/.*\"loss\":\([-0-9.e]*\).*/\1/" native)" \
		"BEGIN { d = a - b; if (d < 0) d = -d; exit !(a > 0 && d <= 1e-5 * b) }" &&
	printf "1 2 3\n" >p.tok &&
	"$TEST_TMP/bin/icl-gen" -q --threads 1 -m "$LLAMA" --ids --greedy -n 8 p.tok >g1 &&
	icl-gen -q --threads 1 -m "$LLAMA" --ids --greedy -n 8 p.tok >g2 &&
	test_cmp g1 g2 && test $(wc -w <g1) -ge 9
'

test_done
