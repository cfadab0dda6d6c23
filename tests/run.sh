#!/bin/sh
# tests/run.sh - run every unit test (cmocka, TAP output) and every program
# test (tests/tNNNN-*.sh, TAP output); print failures in full and end with
# one line "N passed, N failed".
#   ICL_BIN   folder of the built programs   ICL_UNIT  folder of unit test binaries
#   T=t0100   run only tests whose name contains this
set -u
cd "$(dirname "$0")" || exit 2
TESTS_DIR=$(pwd)
: "${ICL_BIN:=$TESTS_DIR/../bin}" "${ICL_UNIT:=$TESTS_DIR/../build/tests}"
export ICL_BIN TESTS_DIR
export PATH="$ICL_BIN:$PATH"
export CMOCKA_MESSAGE_OUTPUT=TAP
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$TESTS_DIR/lsan.supp}"
# Tests that run make (t7000, the demo's plans) must not inherit the
# variables of the make that runs them: `make check T=t7000-pipeline.sh`
# passed T (examples/*.mk's thread option) down through MAKEFLAGS.
unset MAKEFLAGS MFLAGS MAKELEVEL
# Tests run with a small, fixed thread count so results do not depend on the machine.
export ICL_NUM_THREADS="${ICL_NUM_THREADS:-2}"
pass=0 fail=0 files_failed=""
out=$(mktemp) || exit 2
trap 'rm -f "$out"' EXIT

run_one() { # name command...
    name=$1; shift
    case $name in *"${T:-}"*) ;; *) return ;; esac
    start=$(date +%s)
    "$@" >"$out" 2>&1
    rc=$?
    p=$(grep -c '^ok ' "$out")
    # cmocka writes a skipped test as "not ok N # SKIP": not a failure
    f=$(grep '^not ok ' "$out" | grep -vc '# SKIP')
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; echo "not ok - $name exited $rc" >>"$out"; fi
    if [ "$p" -eq 0 ] && [ "$f" -eq 0 ]; then f=1; echo "not ok - $name ran no test" >>"$out"; fi
    pass=$((pass + p)); fail=$((fail + f))
    printf '%-40s %4d passed %4d failed %4ds\n' "$name" "$p" "$f" $(( $(date +%s) - start ))
    if [ "$f" -ne 0 ]; then
        sed 's/^/    /' "$out"
        files_failed="$files_failed $name"
    fi
}

for u in "$ICL_UNIT"/test_*; do
    [ -x "$u" ] || continue
    run_one "$(basename "$u")" "$u"
done
for t in "$TESTS_DIR"/t[0-9]*.sh; do
    [ -f "$t" ] || continue
    run_one "$(basename "$t")" sh "$t"
done

[ -n "$files_failed" ] && echo "failed in:$files_failed"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
