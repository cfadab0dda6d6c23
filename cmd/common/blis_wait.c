/* blis_wait.c - BLIS's thread barrier, waiting without spinning forever.
 *
 * Linked into every program (not into libicl.a: it replaces a BLIS symbol,
 * which is the program's choice, not a library's).
 *
 * Inside a multithreaded GEMM, BLIS 0.9's OpenMP build synchronises its
 * threads with bli_thrcomm_barrier (frame/thread/bli_thrcomm.c,
 * bli_thrcomm_barrier_atomic): a sense-reversing barrier whose waiters spin
 * on the sense word with an empty loop, forever.  When another program holds
 * a core, the descheduled thread is waited for by one that burns the other
 * core for the whole time slice: icl-train with 2 threads ran 3-5x slower
 * than with one (issue 18).  Every call BLIS makes to it goes through its
 * PLT (libblis.so.4 exports the symbol), so the definition below, in the
 * program, replaces it for BLIS's own calls too.
 *
 * Same algorithm and same memory (thrcomm_t's barrier_sense and
 * barrier_threads_arrived, as BLIS 0.9 lays them out), but a waiter spins at
 * most icl_wait_spins times (with the pause instruction), then sleeps on a
 * futex over the low 32 bits of barrier_sense; bit 32 of barrier_sense marks
 * sleepers, so that the last thread to arrive makes the wake-up system call
 * only when someone sleeps.  icl_wait_spins follows OpenMP's wait policy
 * (lib/cli.c's icl_init), so BLIS's barriers and libgomp's wait alike.
 * Barriers order threads; they compute nothing: results are unchanged.
 *
 * Compiled only on Linux/x86-64 against a blis.h without BLIS_TREE_BARRIER
 * whose thrcomm_t has 0.9's layout (checked below); at run time a BLIS whose
 * version is not 0.9 gets its own barrier back (dlsym RTLD_NEXT). */
#define _GNU_SOURCE
#include <blis.h>

#if defined(__linux__) && defined(__x86_64__) && !defined(BLIS_TREE_BARRIER)
#include <dlfcn.h>
#include <limits.h>
#include <linux/futex.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cli.h"

_Static_assert(offsetof(thrcomm_t, n_threads) == 8 && offsetof(thrcomm_t, barrier_sense) == 16 &&
                   offsetof(thrcomm_t, barrier_threads_arrived) == 24 && sizeof(gint_t) == 8,
               "thrcomm_t is not laid out as in BLIS 0.9");

#define SENSE 0xffffffffLL /* the low 32 bits: the sense (0 or 1), the futex word */
#define SLEEPERS (1LL << 32)

typedef void barrier_fn(dim_t, thrcomm_t *);

/* BLIS's own barrier when the library is not 0.9 (another layout), else
 * NULL; looked up once (a race only repeats the same look-up). */
static barrier_fn *blis_own(void)
{
    static int state; /* 0 not looked up, 1 ours, 2 BLIS's */
    static barrier_fn *own;
    int st = __atomic_load_n(&state, __ATOMIC_ACQUIRE);
    if (st == 0) {
        const char *v = bli_info_get_version_str();
        barrier_fn *f = NULL;
        if (!v || strncmp(v, "0.9.", 4) != 0)
            f = (barrier_fn *)dlsym(RTLD_NEXT, "bli_thrcomm_barrier");
        __atomic_store_n(&own, f, __ATOMIC_RELAXED);
        st = f ? 2 : 1;
        __atomic_store_n(&state, st, __ATOMIC_RELEASE);
    }
    return st == 2 ? __atomic_load_n(&own, __ATOMIC_RELAXED) : NULL;
}

void bli_thrcomm_barrier(dim_t t_id, thrcomm_t *comm)
{
    if (comm == NULL || comm->n_threads == 1)
        return;
    barrier_fn *own = blis_own();
    if (own) {
        own(t_id, comm);
        return;
    }
    int64_t *sense = (int64_t *)&comm->barrier_sense;
    int64_t orig = __atomic_load_n(sense, __ATOMIC_RELAXED) & SENSE;
    dim_t arrived = __atomic_add_fetch(&comm->barrier_threads_arrived, 1, __ATOMIC_ACQ_REL);
    if (arrived == comm->n_threads) {
        comm->barrier_threads_arrived = 0;
        int64_t old = __atomic_load_n(sense, __ATOMIC_RELAXED);
        while (!__atomic_compare_exchange_n(sense, &old, (old ^ 1) & SENSE, 1, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
            ;
        if (old & SLEEPERS)
            syscall(SYS_futex, (uint32_t *)sense, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
        return;
    }
    unsigned long long spins = 0, max = icl_wait_spins;
    while ((__atomic_load_n(sense, __ATOMIC_ACQUIRE) & SENSE) == orig) {
        if (spins < max) {
            spins++;
            __builtin_ia32_pause();
            continue;
        }
        /* announce the sleeper, then sleep unless the sense changed meanwhile
         * (the kernel compares the word with orig before sleeping) */
        __atomic_fetch_or(sense, SLEEPERS, __ATOMIC_ACQ_REL);
        syscall(SYS_futex, (uint32_t *)sense, FUTEX_WAIT_PRIVATE, (uint32_t)orig, NULL, NULL, 0);
    }
}
#endif
