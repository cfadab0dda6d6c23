/* Unit tests of cmd/common/blis_wait.c (linked into the programs and the
 * unit tests): BLIS's thread barrier, replaced by one that sleeps after
 * icl_wait_spins spins (issue 18, "no collapse under load").
 *   - BLIS's own code reaches it: bli_thrcomm_bcast (inside libblis) waits
 *     for a late thread without burning the waiting thread's CPU (BLIS 0.9's
 *     barrier spins all the time);
 *   - it synchronises: thousands of episodes with 2 and 3 threads (more
 *     threads than cores: the sleeping path), spinning or not;
 *   - a multithreaded BLIS GEMM through it is bit-identical to one thread. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <blis.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "ops.h"
#include "util.h"

static double thread_cpu(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double wall(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Thread 0 arrives 300 ms late at a broadcast; thread 1 waits in BLIS's
 * bli_thrcomm_bcast, which calls bli_thrcomm_barrier through libblis's
 * PLT.  The waiter must get the value and use well under the 300 ms of CPU
 * that a spinning barrier burns (it sleeps after icl_wait_spins pauses). */
static void bcast_waits_asleep(void **state)
{
    (void)state;
    icl_wait_spins = ICL_WAIT_SPINS;
    thrcomm_t comm;
    memset(&comm, 0, sizeof comm);
    comm.n_threads = 2;
    static int value = 42;
    void *got[2] = {NULL, NULL};
    double cpu[2] = {0, 0}, waited[2] = {0, 0};
#pragma omp parallel num_threads(2)
    {
        int t = omp_get_thread_num();
        if (omp_get_num_threads() == 2) {
            if (t == 0)
                usleep(300000);
            double c0 = thread_cpu(), w0 = wall();
            got[t] = bli_thrcomm_bcast(t, t == 0 ? &value : NULL, &comm);
            cpu[t] = thread_cpu() - c0;
            waited[t] = wall() - w0;
        }
    }
    print_message("# waiter: %.1f ms waited, %.2f ms of CPU\n", 1e3 * waited[1], 1e3 * cpu[1]);
    assert_ptr_equal(got[0], &value);
    assert_ptr_equal(got[1], &value);
    assert_true(waited[1] > 0.2); /* it did wait for thread 0 */
    assert_true(cpu[1] < 0.02);   /* asleep, not spinning (a spinning waiter burns most of 300 ms) */
}

/* n threads, episodes of: add 1 to a counter, barrier, all see n * (e + 1),
 * barrier.  A lost wake-up hangs; a barrier that lets a thread through
 * early shows a wrong count. */
static void episodes(int n, unsigned long long spins)
{
    icl_wait_spins = spins;
    thrcomm_t comm;
    memset(&comm, 0, sizeof comm);
    comm.n_threads = n;
    const int E = 3000;
    int counter = 0, bad = 0, ran = 0;
#pragma omp parallel num_threads(n)
    {
        if (omp_get_num_threads() == n) {
            int t = omp_get_thread_num();
            if (t == 0)
                ran = 1;
            for (int e = 0; e < E; e++) {
                __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
                bli_thrcomm_barrier(t, &comm);
                if (__atomic_load_n(&counter, __ATOMIC_RELAXED) != n * (e + 1))
                    __atomic_add_fetch(&bad, 1, __ATOMIC_RELAXED);
                bli_thrcomm_barrier(t, &comm);
            }
        }
    }
    assert_true(ran);
    assert_int_equal(bad, 0);
    assert_int_equal(counter, n * E);
    icl_wait_spins = ICL_WAIT_SPINS;
}

static void episodes_2_sleeping(void **state) { (void)state; episodes(2, 0); }
static void episodes_2_spinning(void **state) { (void)state; episodes(2, ICL_WAIT_SPINS); }
static void episodes_3_sleeping(void **state) { (void)state; episodes(3, 0); }
static void episodes_3_spinning(void **state) { (void)state; episodes(3, ICL_WAIT_SPINS); }

/* A GEMM large enough for BLIS's threads, 2 threads (barriers that sleep at
 * once) against 1: the same bits. */
static void gemm_threads_same_bits(void **state)
{
    (void)state;
    const int m = 301, n = 257, k = 383;
    float *a = icl_xmalloc((size_t)m * k * sizeof *a), *b = icl_xmalloc((size_t)k * n * sizeof *b);
    float *c1 = icl_xcalloc((size_t)m * n, sizeof *c1), *c2 = icl_xcalloc((size_t)m * n, sizeof *c2);
    uint32_t x = 12345;
    for (int i = 0; i < m * k; i++)
        a[i] = (float)((x = x * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
    for (int i = 0; i < k * n; i++)
        b[i] = (float)((x = x * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
    icl_wait_spins = 0;
    icl_set_threads(1);
    icl_gemm(m, n, k, 1.0f, a, k, 1, b, n, 1, 0.0f, c1, n, 1, 1);
    icl_set_threads(2);
    for (int r = 0; r < 5; r++)
        icl_gemm(m, n, k, 1.0f, a, k, 1, b, n, 1, 0.0f, c2, n, 1, 2);
    assert_memory_equal(c1, c2, (size_t)m * n * sizeof *c1);
    double s = 0;
    for (int i = 0; i < m * n; i++)
        s += c1[i] * c1[i];
    assert_true(s > 1.0); /* not all zero */
    icl_wait_spins = ICL_WAIT_SPINS;
    free(a);
    free(b);
    free(c1);
    free(c2);
}

int main(void)
{
    icl_blis_setup();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bcast_waits_asleep),
        cmocka_unit_test(episodes_2_sleeping),
        cmocka_unit_test(episodes_2_spinning),
        cmocka_unit_test(episodes_3_sleeping),
        cmocka_unit_test(episodes_3_spinning),
        cmocka_unit_test(gemm_threads_same_bits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
