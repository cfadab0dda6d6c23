/* bench_clock.h - the clock of bench/gemm_shapes.c, bench/step_budget.c and
 * bench/bf16_shapes.c:
 * wall-clock seconds, or with $CPUTIME set (bench_clock_init reads it) the
 * process's CPU seconds (with 1 thread: the work itself, whatever else the
 * machine runs; with more, OpenMP's and BLIS's spinning counts too). */
#ifndef ICL_BENCH_CLOCK_H
#define ICL_BENCH_CLOCK_H

#include <stdlib.h>
#include <time.h>

#include "util.h"

static int cputime;

static inline void bench_clock_init(void) { cputime = getenv("CPUTIME") != NULL; }

/* The process's CPU seconds (all its threads). */
static inline double bench_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static inline double now(void) { return cputime ? bench_cpu_s() : icl_now(); }

#endif
