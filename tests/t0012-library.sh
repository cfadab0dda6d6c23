#!/bin/sh
# The library's contract (doc/DESIGN.md, README "Library users"): every
# exported symbol starts with icl_, and no lib/ source prints or exits except
# util.c (the allocation wrappers' out-of-memory exit) and cli.c (the
# programs' side: icl_die, options, signals).
. "$(dirname "$0")/lib.sh"
LIBDIR="$TESTS_DIR/../lib"
LIBA="$ICL_BIN/../lib/libicl.a"
# Files that fork a child which must end with _exit() when its exec fails
# (the caller's process never exits): only that call is allowed there.
FORKS="sandbox.c"

if command -v nm >/dev/null 2>&1 && test -f "$LIBA"; then
test_expect_success 'every exported symbol of libicl.a starts with icl_' '
	# (__odr_asan.NAME: ASan'"'"'s markers of NAME in the SANITIZE=1 build; .gomp_critical_user_NAME: the lock of a named OpenMP critical section)
	nm -g --defined-only "$LIBA" | awk "NF == 3 { print \$3 }" | grep -v -e "^__odr_asan\\." -e "^\\.gomp_critical_user_icl_" | sort -u >syms &&
	test $(wc -l <syms) -gt 100 &&
	if grep -v "^icl_" syms; then exit 1; fi
'
else
test_skip 'every exported symbol of libicl.a starts with icl_' 'no nm or no libicl.a'
fi

test_expect_success 'no lib/ source prints to stderr or exits but util.c and cli.c' '
	for f in "$LIBDIR"/*.c; do
		b=$(basename "$f")
		case " util.c cli.c " in *" $b "*) continue ;; esac
		case " $FORKS " in *" $b "*) calls="die|usage_die|icl_die|icl_usage_die|warn|icl_warn|icl_vwarn|exit|abort" ;;
		*) calls="die|usage_die|icl_die|icl_usage_die|warn|icl_warn|icl_vwarn|exit|_exit|abort" ;; esac
		if grep -n -E "(^|[^_a-z])($calls)\\(|stderr" "$f"; then
			echo "$b prints or exits"; exit 1
		fi
	done
'

test_expect_success 'install lists every header as public or internal' '
	make -s -C "$TESTS_DIR/.." -n install DESTDIR=/nonexistent >plan 2>err &&
	test_grep "include/icl" plan && ! grep -q "tok_internal.h" plan && ! grep -q "hashtab.h" plan
'

test_done
