#!/bin/sh
# The fuzz targets (tests/fuzz/run.sh) link the whole library built by
# clang, which rejects some of what gcc accepts (GCC's target pragmas, an
# unknown __builtin_cpu_supports feature, AVX-512 or AMX intrinsics inside
# an OpenMP region of a target-attributed function).  Each translation unit
# of lib/ and the fuzz targets compile with clang here, as the fuzz build
# does (no -march), at -O0 (the errors come from clang's code generator and
# back end, so -fsyntax-only would miss them; -O0 is quick).  Skipped where
# clang or its OpenMP header is missing.
. "$(dirname "$0")/lib.sh"
ROOT="$TESTS_DIR/.."
BLIS_INC=/usr/include/$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)/blis-openmp

if ! command -v clang >/dev/null 2>&1; then
	test_skip 'the library compiles under clang' 'no clang'
elif ! printf '#include <omp.h>\nint main(void) { return omp_get_max_threads() < 0; }\n' >omp.c ||
	! clang -fopenmp -c -o omp.o omp.c >/dev/null 2>&1; then
	test_skip 'the library compiles under clang' 'clang without OpenMP (libomp-dev)'
else
	test_expect_success 'the library and the fuzz targets compile under clang' '
		bad=0
		for f in "$ROOT"/lib/*.c "$ROOT"/tests/fuzz/fuzz_*.c; do
			clang -std=gnu11 -O0 -w -fopenmp -I"$ROOT/lib" -isystem "$BLIS_INC" -c -o o.o "$f" 2>err ||
				{ echo "$f:"; head -20 err; bad=1; }
		done
		exit $bad
	'
fi

test_done
