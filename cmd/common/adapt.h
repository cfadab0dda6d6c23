/* adapt.h - the thread count that follows the machine's load (issue 18,
 * "no collapse under load").
 *
 * The programs' side, not the library's (lib/ takes a thread count; the
 * programs decide it).  While another program keeps a core busy, a team of
 * as many threads as cores waits, at every fork and join, for the thread
 * the kernel has descheduled: 2 threads ran 8% slower than 1 on 2 cores
 * against one busy loop, even with bounded spinning (bench/RESULTS.md,
 * bench-load).  So, when the user did not fix the count (--threads, or
 * ICL_NUM_THREADS, or --no-adaptive-threads), icl-train, icl-gen and
 * icl-eval measure between units of work (optimizer steps, batches), over
 * windows of at least ICL_ADAPT_WINDOW seconds, how much CPU the other
 * programs use on the cores this process may run on, and run on the cores
 * they leave free; when the others stop, the full count comes back.
 *
 * Measured: the busy jiffies (user, nice, system, irq, softirq, steal) of
 * the CPUs in this process's affinity mask (sched_getaffinity) in
 * /proc/stat, less this process's own CPU time (getrusage, all its threads:
 * its own spinning is its own), over the wall time of the window, in
 * jiffies (sysconf(_SC_CLK_TCK)).  Where /proc/stat cannot be read the count
 * stays as it is.
 *
 * Results do not depend on the count: every sum icl's kernels and BLIS
 * compute is ordered the same way whatever the team size (lib/optim.c's
 * icl_sumsq was the exception and is now summed in fixed blocks;
 * tests/t0015-adaptive-threads.sh checks a run that changes its count
 * against a fixed one, bit for bit). */
#ifndef ICL_ADAPT_H
#define ICL_ADAPT_H

/* The shortest window measured, in seconds: /proc/stat counts in ticks of
 * 1/CLK_TCK s (10 ms), so a second has 100 per core.  $ICL_ADAPT_SECONDS
 * sets it (0 to 3600; 0: no adaptation). */
#define ICL_ADAPT_WINDOW 1.0

/* The decision, a pure function of the measured numbers.
 *   busy      busy jiffies of the ncpu allowed CPUs over the window (all
 *             processes, this one included)
 *   own       this process's CPU time over the window, in jiffies
 *   interval  the window's wall time, in jiffies (> 0)
 *   ncpu      the CPUs this process may run on (>= 1)
 *   cur       the thread count now (>= 1)
 *   max       the count without load (the default: all cores; >= 1)
 * The others use o = (busy - own) / interval cores (clamped to 0..ncpu).
 * A core counts as taken when they use at least half of it: the count goes
 * down to ncpu - floor(o + 1/2), at least 1; it goes back up only when the
 * others have left a core free by three quarters (ncpu - floor(o + 3/4)),
 * so that a measurement near a half does not flip the count each window.
 * Never above max; max itself when the others use under a quarter core.
 * interval <= 0 (no window) returns cur. */
int icl_adapt_decide(double busy, double own, double interval, int ncpu, int cur, int max);

/* The state of one program's adaptation. */
typedef struct {
    int on;          /* adapting (0: the count is fixed, or nothing to measure) */
    int verbose;     /* print a notice on stderr when the count changes */
    int cur, max;    /* the count now; without load (0: read at the first poll) */
    int ncpu;        /* CPUs in the affinity mask */
    int cpus[1024];  /* their ids (the first ncpu) */
    double window;   /* seconds: ICL_ADAPT_WINDOW or $ICL_ADAPT_SECONDS */
    double t0, busy0, own0; /* the window's start: icl_now() s, jiffies, jiffies */
    double others;   /* the last measurement, in cores */
    int *line_open;  /* a progress line on stderr is unfinished (may be NULL):
                        the notice first ends it and clears the flag */
} icl_adapt;

/* Start adapting when on is nonzero (the user fixed nothing) and
 * $ICL_ADAPT_SECONDS is not 0 (a value that is not a number of seconds from
 * 0 to 3600 dies naming it, exit 1): the window opens now.  max: the count without load, 0 to take omp_get_max_threads()
 * at the first poll (icl-train's library call sets it after this).  a->on
 * is cleared when /proc/stat or the affinity mask cannot be read. */
void icl_adapt_start(icl_adapt *a, int on, int max, int verbose);

/* Between units of work, outside any parallel region: when the window is
 * at least a->window s long, measure it, decide, set the count
 * (omp_set_num_threads and bli_thread_set_num_threads) and open the next
 * window.  where: how the notice names the moment ("step 12", NULL for
 * none).  The notice, one line on stderr when the count changes (and
 * verbose): "PROG: other programs use 1.0 of 2 cores: 1 thread from step 12".
 * Returns the count now. */
int icl_adapt_poll(icl_adapt *a, const char *where);

#endif
