# tests/lib.sh - TAP helpers for program tests, in the style of git's test-lib.
# Each test script sources this, runs in its own temporary directory (removed
# at exit), and calls test_expect_success / test_expect_failure ... test_done.
#   $TESTS_DIR  tests/ (absolute)   $DATA  tests/data
set -u
: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
: "${ICL_BIN:=$TESTS_DIR/../bin}"
PATH="$ICL_BIN:$PATH"
DATA="$TESTS_DIR/data"
export PATH DATA
TEST_TMP=$(mktemp -d "${TMPDIR:-/tmp}/icl-test.XXXXXX") || exit 2
trap 'cd /; rm -rf "$TEST_TMP"' EXIT
cd "$TEST_TMP" || exit 2
test_count=0 test_failed=0

# test_expect_success DESCRIPTION SCRIPT: SCRIPT (run by eval in a subshell
# under set -e) must exit 0; every command in it counts.  A command that
# must fail: "if cmd; then exit 1; fi" (set -e ignores "! cmd").
test_expect_success() {
    test_count=$((test_count + 1))
    # Not "if ( set -e; ... )": set -e is ignored in a condition, even in a
    # subshell, and only the script's last command would count.
    ( set -e; eval "$2" ) >"$TEST_TMP/.log" 2>&1
    if [ $? -eq 0 ]; then
        echo "ok $test_count - $1"
    else
        echo "not ok $test_count - $1"
        sed 's/^/#   /' "$TEST_TMP/.log"
        test_failed=$((test_failed + 1))
    fi
}

# test_expect_code CODE DESCRIPTION SCRIPT: the last command's exit status must be CODE.
test_expect_code() {
    test_count=$((test_count + 1))
    ( eval "$3" ) >"$TEST_TMP/.log" 2>&1
    rc=$?
    if [ "$rc" -eq "$1" ]; then
        echo "ok $test_count - $2"
    else
        echo "not ok $test_count - $2 (exit $rc, wanted $1)"
        sed 's/^/#   /' "$TEST_TMP/.log"
        test_failed=$((test_failed + 1))
    fi
}

# test_skip DESCRIPTION REASON
test_skip() {
    test_count=$((test_count + 1))
    echo "ok $test_count # skip $1 ($2)"
}

# Helpers usable inside test scripts.
test_cmp() { cmp "$1" "$2" || { diff -u "$1" "$2" | head -40; return 1; }; }
test_grep() { grep -q -- "$1" "$2" || { echo "no '$1' in $2:"; head -20 "$2"; return 1; }; }

# test_must_fail CMD ARGS...: CMD must exit non-zero, and not by a signal
# (a crash is never the expected failure).  Use it instead of "! CMD", which
# set -e ignores in the middle of a test.
test_must_fail() {
    _rc=0
    "$@" || _rc=$?
    if [ "$_rc" -eq 0 ]; then
        echo "test_must_fail: succeeded: $*" >&2
        return 1
    elif [ "$_rc" -gt 128 ]; then
        echo "test_must_fail: died of signal $((_rc - 128)): $*" >&2
        return 1
    fi
    return 0
}

test_done() {
    echo "1..$test_count"
    [ "$test_failed" -eq 0 ]
}
